"""A/B experiments on live traffic (issue 19): variants, sticky assignment, statistics, conclusion."""
