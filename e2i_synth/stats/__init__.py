"""Pure statistics shared by the answer key (at generation time) and the consumers (on the
loaded data): the same code scores both, so they cannot disagree by construction."""
