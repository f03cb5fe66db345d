"""The one base of every error a user can cause: a bad file, flag value, data set or combination.

The scripts turn it into one line on stderr and exit status 1 (utils.run.run.fail_cleanly). It lives
in the lowest layer so that the errors of every layer can derive from it.
"""


class UserError(Exception):
    """Its message is one line that says what is wrong and, where it can, what to do."""
