"""Room.owner becomes the one record of ownership: memberships with the old
role "owner" become plain roles.

- The owner's own membership becomes "member" (rank comes from Room.owner).
- An "owner" membership of someone who is not Room.owner (the two records
  disagreed, e.g. after the owner was changed in the admin) becomes
  "moderator": that person keeps moderating, but Room.owner owns the room.
- Every owner has a membership (one is made if they had none; a ban stays).
"""

from django.db import migrations


def forwards(apps, schema_editor):
    Membership = apps.get_model("chat", "Membership")
    Room = apps.get_model("chat", "Room")
    for membership in Membership.objects.filter(role="owner").select_related("room"):
        is_owner = membership.user_id == membership.room.owner_id
        membership.role = "member" if is_owner else "moderator"
        membership.save(update_fields=["role"])
    for room in Room.objects.all():
        Membership.objects.get_or_create(room=room, user_id=room.owner_id)


def backwards(apps, schema_editor):
    Membership = apps.get_model("chat", "Membership")
    Room = apps.get_model("chat", "Room")
    for room in Room.objects.all():
        Membership.objects.update_or_create(
            room=room, user_id=room.owner_id, defaults={"role": "owner"}
        )


class Migration(migrations.Migration):
    dependencies = [("chat", "0004_one_owner_record")]

    operations = [migrations.RunPython(forwards, backwards)]
