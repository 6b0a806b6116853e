"""User feedback on traces (issue 19): scores, comments, corrections."""
