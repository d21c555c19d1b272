from django.db import models
from django.db.models.functions import Now


class Counter(models.Model):
    key = models.CharField(max_length=100, unique=True)
    value = models.IntegerField(default=0)


class Execution(models.Model):
    key = models.CharField(max_length=100)
    pid = models.IntegerField(null=True)
    at = models.DateTimeField(db_default=Now())


class Span(models.Model):
    """When a run of a limited task started and ended, by the database's clock (every process
    reads the same one), so overlaps can be measured across processes."""

    key = models.CharField(max_length=100)
    pid = models.IntegerField()
    started_at = models.DateTimeField()
    ended_at = models.DateTimeField(null=True)
