"""Logging filters used by settings.LOGGING."""
import logging


class OneLine(logging.Filter):
    """Drop the traceback: for records whose message already says everything (a bad Host
    header from a scanner is one line of news, not thirty)."""

    def filter(self, record):
        record.exc_info = None
        record.exc_text = None
        return True
