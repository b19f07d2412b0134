"""Grading: inspections and refurbishments -> a grade with its reasons."""
