"""Taxonomy leaves: finding, checking and loading qna.yaml files and their documents."""
