"""The generated bad-input corpus (see make_bad_inputs.py); nothing here is a checked-in file."""
