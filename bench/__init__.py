"""`make bench`: how fast stock moves, next to this machine's own ceiling. Prints figures and
writes .bench/latest.json; asserts nothing about time."""
