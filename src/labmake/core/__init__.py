"""The bottom layer: pieces every stage shares, importing nothing else of labmake."""
