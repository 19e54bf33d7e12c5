"""A leaf's yield floor: its pipeline in seeded rounds until enough samples are accepted.

The first round is the pipeline's own counts (the requests, row ids and seeds a pipeline without
rounds sends). While the leaf has fewer than ``min_kept`` accepted samples -- counted by
:class:`labmake.sdg.accept.Acceptor`, the filter stage's own rules, over the samples in the order
the generate stage writes them -- another round runs on the next sample indices, so its rows have
new ids, seeds and few-shot draws. A round's size is what the leaf's acceptance so far says it
still needs (a quarter more; when nothing was accepted yet, as many as before), at least a batch
of :data:`MIN_ROUND_ROWS` rows, at most as many as all rounds before it; and it is cut to what
still fits in ``max_requests`` if every sample passed every judge, so a leaf never spends more
than its first round or ``max_requests``, whichever is larger. A round after the first that
accepts nothing and whose samples are all repeats or unreadable ends the floor: the leaf's prompts
have stopped giving anything new (a leaf of one-digit seeds spent 234 requests on repeats of its
digits before this rule); a round whose new samples the judges or rules rejected is followed by
another, as a hard leaf needs. A round's size depends only on
earlier rounds' results, which the request cache gives back byte for byte: a re-run, or one
resumed after a kill, sends the same rounds and writes the same bytes.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from labmake.sdg.accept import Acceptor
from labmake.sdg.blocks.base import Context, Row
from labmake.sdg.blocks.rows import RowsBlock
from labmake.sdg.pipeline import Pipeline, Result
from labmake.sdg.pipeline import run as run_pipeline
from labmake.teacher.protocol import Completion, Request

MIN_ROUND_ROWS = 8  # a round smaller than a decoding batch leaves the teacher's slots idle

# (window, dry) -> a fresh Context for one round (or its dry run); window None: the first round.
MakeContext = Callable[[tuple[int, int] | None, bool], Context]


@dataclass
class Round:
    index: int
    window: tuple[int, int]  # (first sample index, samples)
    result: Result
    requests: int  # teacher requests the round sent (cache hits included)
    accepted: int  # the leaf's accepted samples after this round, all rounds so far


def _counted(ctx: Context) -> list[int]:
    """Make ``ctx`` count the requests its blocks send; the returned cell holds the count."""
    sent = [0]
    inner = ctx.complete

    def complete(requests: list[Request], label: str) -> list[Completion]:
        sent[0] += len(requests)
        return inner(requests, label)

    ctx.complete = complete
    return sent


def worst_case(pipeline: Pipeline, make_ctx: MakeContext, window: tuple[int, int]) -> int:
    """Requests ``window`` would send if every sample passed every judge (a dry run)."""
    ctx = make_ctx(window, True)
    run_pipeline(pipeline, ctx)
    return len(ctx.log)


def next_size(accepted: int, need: int, done: int, rows_per_sample: int) -> int:
    """Samples the next round asks for, before the request budget cuts it."""
    wanted = math.ceil(1.25 * need * done / accepted) if accepted else done
    return max(min(wanted, done), math.ceil(MIN_ROUND_ROWS / rows_per_sample))


def run_rounds(
    pipeline: Pipeline,
    make_ctx: MakeContext,
    floor: tuple[int, int] | None,
    acceptor: Acceptor | None = None,
) -> list[Round]:
    """The leaf's rounds: the first, then more while under the floor and within the budget."""
    first = make_ctx(None, False)
    rows = pipeline.blocks[0]
    assert isinstance(rows, RowsBlock)
    rows.counts(first.count_root())
    done, rows_per_sample = rows.count, rows.rows_per_sample(first)
    sent = _counted(first)
    result = run_pipeline(pipeline, first)
    accepted = _accept(acceptor, result.kept)
    rounds = [Round(0, (0, done), result, sent[0], accepted)]
    min_kept, max_requests = floor or (0, 0)
    spent = sent[0]
    while accepted < min_kept:
        size = next_size(accepted, min_kept - accepted, done, rows_per_sample)
        per_sample = worst_case(pipeline, make_ctx, (done, 1))
        size = min(size, (max_requests - spent) // per_sample) if per_sample else 0
        if size < 1:
            break
        ctx = make_ctx((done, size), False)
        sent = _counted(ctx)
        result = run_pipeline(pipeline, ctx)
        gained = _accept(acceptor, result.kept)
        accepted += gained
        rounds.append(Round(len(rounds), (done, size), result, sent[0], accepted))
        spent += sent[0]
        done += size
        if not gained and not _new_samples(pipeline, result):
            break  # the leaf's prompts give only repeats or nothing readable: more would too
    return rounds


# Why a row is a repeat of one seen before (a dedup block's, the filter rules').
REPEATS = frozenset({"exact_duplicate", "copies_a_seed", "near_duplicate"})


def _new_samples(pipeline: Pipeline, result: Result) -> int:
    """Samples of a round that the teacher wrote readably and that repeat nothing seen before."""
    types = {block.name: block.type for block in pipeline.blocks}
    unread = ("generate", "parse")
    fresh = [
        row
        for row in result.rejected
        if types.get(row["_rejected_by"]) not in unread and row["_reason"] not in REPEATS
    ]
    return len(result.kept) + len(fresh)


def _accept(acceptor: Acceptor | None, kept: list[Row]) -> int:
    """How many of a round's kept rows the filters accept (all of them without an acceptor)."""
    if acceptor is None:
        return len(kept)
    return sum(acceptor.reason(row) is None for row in kept)


def bound(first_round: int, floor: tuple[int, int] | None) -> int:
    """The most requests a leaf may send: its first round, or max_requests with rounds."""
    if floor is None or floor[0] == 0:
        return first_round
    return max(first_round, floor[1])
