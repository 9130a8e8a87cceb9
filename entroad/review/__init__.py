"""Site review: a web page to give verdicts on predictions, and their export as a dataset."""
