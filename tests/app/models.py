from django.db import models
from django.db.models.functions import Now


class Counter(models.Model):
    key = models.CharField(max_length=100, unique=True)
    value = models.IntegerField(default=0)


class Execution(models.Model):
    key = models.CharField(max_length=100)
    pid = models.IntegerField(null=True)
    at = models.DateTimeField(db_default=Now())
