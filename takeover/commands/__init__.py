"""One module per ``takeover`` sub-command; each imports its layer inside the command body."""
