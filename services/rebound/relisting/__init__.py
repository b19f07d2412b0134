"""Relisting: a seller's disposition policy decides where each graded unit may go."""
