from django.db import models


class Note(models.Model):
    """A row written through the primary and read back from the replica."""

    text = models.CharField(max_length=500)
    created = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created", "-id"]

    def __str__(self):
        return self.text[:60]

    def as_dict(self):
        return {"id": self.pk, "text": self.text, "created": self.created.isoformat()}
