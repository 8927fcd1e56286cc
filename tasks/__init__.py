"""The Celery app, the pre-dispatch router and the task functions."""
