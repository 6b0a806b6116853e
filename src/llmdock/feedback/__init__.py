"""User feedback on traces (issue 19): scores, comments, corrections; exported as chat datasets."""

from llmdock.feedback.book import FeedbackBook, Scope
from llmdock.feedback.client import send_feedback
from llmdock.feedback.export import chat_dataset
from llmdock.feedback.scores import FeedbackIn, check_feedback

__all__ = ["FeedbackBook", "FeedbackIn", "Scope", "chat_dataset", "check_feedback", "send_feedback"]
