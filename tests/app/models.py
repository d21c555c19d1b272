from django.db import models


class Counter(models.Model):
    key = models.CharField(max_length=100, unique=True)
    value = models.IntegerField(default=0)


class Execution(models.Model):
    key = models.CharField(max_length=100)
    pid = models.IntegerField(null=True)
