"""How a consumer group's page lays out its members: a member still moving to its target
assignment shows that target beside what it holds; one that reached it says so; a classic
group has no epochs or targets to show."""

from __future__ import annotations

import re

from django.template.loader import render_to_string


def _member(member_id: str, protocol: str, epoch, held, target) -> dict:
    return {
        "member_id": member_id,
        "client_id": f"client-{member_id}",
        "host": "10.0.0.1",
        "protocol": protocol,
        "member_epoch": epoch,
        "assignments": [{"topic": "orders", "partitions": held}] if held else [],
        "target_assignments": None if target is None else [{"topic": "orders", "partitions": target}],
    }


def _cells(html: str, member_id: str) -> dict[str, str]:
    row = re.search(rf'<tr class="member" data-member-id="{member_id}">(.*?)</tr>', html, re.S)
    assert row, member_id
    cells = re.findall(r'<td class="(?:num )?member-(\w+)">(.*?)</td>', row.group(1), re.S)
    return {name: " ".join(re.sub(r"<[^>]+>", " ", text).split()) for name, text in cells}


def test_members_of_a_migrating_group_and_their_targets():
    group = {
        "protocol": "consumer",
        "members": [
            _member("moving", "consumer", 6, [0, 1], [1]),
            _member("settled", "classic", 7, [2], [2]),
            _member("waiting", "consumer", 7, [], [0]),
        ],
    }
    html = render_to_string("web/groups/_members.html", {"group": group})
    assert _cells(html, "moving") == {
        "host": "10.0.0.1",
        "type": "consumer",
        "epoch": "6",
        "assignment": "orders: 0, 1",
        "target": "orders: 1",
    }
    assert _cells(html, "settled")["type"] == "classic" and _cells(html, "settled")["target"] == "reached"
    assert _cells(html, "waiting")["assignment"] == "—" and _cells(html, "waiting")["target"] == "orders: 0"


def test_a_classic_groups_members_have_no_epochs_or_targets():
    group = {"protocol": "classic", "members": [_member("k", "classic", None, [0, 1, 2], None)]}
    html = render_to_string("web/groups/_members.html", {"group": group})
    assert _cells(html, "k") == {"host": "10.0.0.1", "type": "classic", "assignment": "orders: 0, 1, 2"}
    assert "Member epoch" not in html and "Target" not in html
