"""Every feature-flag method of the Python SDK against Flagpole:
list_feature_flags (pages, cursors, auto-pagination), get_feature_flag,
enable_feature_flag, disable_feature_flag, add_flag_target,
remove_flag_target, list_organization_feature_flags and
list_user_feature_flags, with the SDK's errors.

The SDK parses each flag into workos.common.models.feature_flag.FeatureFlag
(`Flag` is an alias), whose from_dict indexes every field but `object`, so a
missing key (`owner`, say) fails the whole call with "Unexpected API response
while parsing FeatureFlag".
"""

from __future__ import annotations

from datetime import datetime

import pytest
from workos import AuthenticationError, NotFoundError, SyncPage, WorkOSClient
from workos.common.models.feature_flag import FeatureFlag


def slug(i: int) -> str:
    return f"flag-{i:02d}"


@pytest.fixture(scope="module")
def ids(flagpole):
    for i in range(12):
        flagpole.api(
            "POST",
            "/api/v1/feature-flags",
            {"name": f"Flag {i:02d}", "slug": slug(i), "description": f"Flag number {i}", "tags": ["sdk"]},
        )
    acme = flagpole.api("POST", "/api/v1/organizations", {"name": "Acme", "external_id": "acme"})
    globex = flagpole.api("POST", "/api/v1/organizations", {"name": "Globex", "external_id": "globex"})
    ada = flagpole.api("POST", "/api/v1/users", {"email": "ada@acme.example", "external_id": "ada"})
    bob = flagpole.api("POST", "/api/v1/users", {"email": "bob@globex.example", "external_id": "bob"})
    flagpole.api("POST", f"/api/v1/organizations/{acme['id']}/memberships", {"user_id": ada["id"]})
    flagpole.api("POST", f"/api/v1/organizations/{globex['id']}/memberships", {"user_id": bob["id"]})
    return {"acme": acme["id"], "globex": globex["id"], "ada": ada["id"], "bob": bob["id"]}


def evaluate(flagpole, user_id: str, organization_id: str | None = None) -> list[str]:
    """Flagpole's own evaluation (POST /api/v1/evaluate), sorted."""
    body = {"user_id": user_id}
    if organization_id is not None:
        body["organization_id"] = organization_id
    return sorted(flagpole.api("POST", "/api/v1/evaluate", body)["feature_flags"])


def assert_feature_flag(flag, **expected) -> None:
    """The fields WorkOS's feature_flag object has, as the SDK parses them."""
    assert isinstance(flag, FeatureFlag)
    assert flag.object == "feature_flag"
    assert flag.id.startswith("flag_")
    assert isinstance(flag.name, str) and isinstance(flag.slug, str)
    assert flag.description is None or isinstance(flag.description, str)
    assert flag.owner is None, "Flagpole's flags have no owner"
    assert isinstance(flag.tags, list) and all(isinstance(t, str) for t in flag.tags)
    assert isinstance(flag.enabled, bool) and isinstance(flag.default_value, bool)
    assert isinstance(flag.created_at, datetime) and flag.created_at.tzinfo is not None
    assert isinstance(flag.updated_at, datetime) and flag.updated_at.tzinfo is not None
    for name, value in expected.items():
        assert getattr(flag, name) == value, name


def test_lists_flags_newest_first_ten_a_page_and_auto_paginates(workos, ids):
    page = workos.feature_flags.list_feature_flags()
    assert isinstance(page, SyncPage)
    assert [f.slug for f in page.data] == [slug(i) for i in range(11, 1, -1)]
    assert page.list_metadata.after, "a next page"
    assert page.list_metadata.before is None, "nothing before the first page"
    assert page.has_more()
    assert_feature_flag(
        page.data[0],
        name="Flag 11",
        slug="flag-11",
        description="Flag number 11",
        tags=["sdk"],
        enabled=False,
        default_value=False,
    )

    every = list(page.auto_paging_iter())
    assert [f.slug for f in every] == [slug(i) for i in range(11, -1, -1)], "each flag once"


def test_cursors_and_order(workos, ids):
    first = workos.feature_flags.list_feature_flags()
    second = workos.feature_flags.list_feature_flags(after=first.list_metadata.after)
    assert [f.slug for f in second.data] == ["flag-01", "flag-00"]
    assert second.list_metadata.after is None and not second.has_more()
    assert second.list_metadata.before == second.data[0].id
    back = workos.feature_flags.list_feature_flags(before=second.list_metadata.before)
    assert [f.slug for f in back.data] == [f.slug for f in first.data]

    asc = workos.feature_flags.list_feature_flags(order="asc", limit=2)
    assert [f.slug for f in asc.data] == ["flag-00", "flag-01"]
    asc_next = workos.feature_flags.list_feature_flags(
        order="asc", limit=2, after=asc.list_metadata.after
    )
    assert [f.slug for f in asc_next.data] == ["flag-02", "flag-03"]
    assert len(list(asc.auto_paging_iter())) == 12


def test_gets_enables_and_disables_a_flag(flagpole, workos, ids):
    flag = workos.feature_flags.get_feature_flag("flag-03")
    assert_feature_flag(flag, slug="flag-03", name="Flag 03", enabled=False)

    on = workos.feature_flags.enable_feature_flag("flag-03")
    assert_feature_flag(on, slug="flag-03", enabled=True)
    assert workos.feature_flags.get_feature_flag("flag-03").enabled is True
    rule = flagpole.api("GET", "/api/v1/feature-flags/flag-03/environments/production")
    assert rule["enabled"] is True, "Flagpole sees the change"

    off = workos.feature_flags.disable_feature_flag("flag-03")
    assert_feature_flag(off, slug="flag-03", enabled=False)
    assert workos.feature_flags.get_feature_flag("flag-03").enabled is False


def test_each_environment_has_its_own_switch(flagpole, workos, ids):
    workos.feature_flags.enable_feature_flag("flag-04")
    with flagpole.workos(api_key=flagpole.staging_key) as staging:
        assert staging.feature_flags.get_feature_flag("flag-04").enabled is False
    assert workos.feature_flags.get_feature_flag("flag-04").enabled is True


def test_default_value_is_true_when_the_rule_is_all(flagpole, workos, ids):
    flagpole.api("PUT", "/api/v1/feature-flags/flag-02/environments/production", {"mode": "all"})
    assert workos.feature_flags.get_feature_flag("flag-02").default_value is True


def test_errors_are_the_sdks_exceptions(flagpole, workos, ids):
    with pytest.raises(NotFoundError) as raised:
        workos.feature_flags.get_feature_flag("no-such-flag")
    assert raised.value.status_code == 404
    assert raised.value.code == "entity_not_found"
    assert isinstance(raised.value.message, str) and raised.value.message
    with pytest.raises(NotFoundError):
        workos.feature_flags.enable_feature_flag("no-such-flag")
    with pytest.raises(NotFoundError):
        workos.feature_flags.disable_feature_flag("no-such-flag")
    with WorkOSClient(api_key="sk_not_a_key", base_url=flagpole.base, max_retries=0) as stranger:
        with pytest.raises(AuthenticationError) as raised:
            stranger.feature_flags.list_feature_flags()
    assert raised.value.status_code == 401


def test_targets_decide_the_organization_and_user_lists(flagpole, workos, ids):
    workos.feature_flags.enable_feature_flag("flag-05")
    assert workos.feature_flags.add_flag_target(resource_id=ids["acme"], slug="flag-05") is None
    workos.feature_flags.enable_feature_flag("flag-06")
    assert workos.feature_flags.add_flag_target(resource_id=ids["bob"], slug="flag-06") is None

    acme = workos.feature_flags.list_organization_feature_flags(ids["acme"])
    assert isinstance(acme, SyncPage)
    assert [f.slug for f in acme.data] == ["flag-05"]
    assert_feature_flag(acme.data[0], slug="flag-05", enabled=True)
    bob = workos.feature_flags.list_user_feature_flags(ids["bob"])
    assert [f.slug for f in bob.data] == ["flag-06"]

    evaluated = flagpole.api(
        "POST", "/api/v1/evaluate", {"user_id": ids["ada"], "organization_id": ids["acme"]}
    )
    assert evaluated["feature_flags"] == ["flag-05"]

    assert workos.feature_flags.remove_flag_target(resource_id=ids["acme"], slug="flag-05") is None
    assert workos.feature_flags.list_organization_feature_flags(ids["acme"]).data == []
    assert evaluate(flagpole, ids["ada"], ids["acme"]) == []
    assert workos.feature_flags.remove_flag_target(resource_id=ids["bob"], slug="flag-06") is None
    assert workos.feature_flags.list_user_feature_flags(ids["bob"]).data == []
    assert evaluate(flagpole, ids["bob"], ids["globex"]) == []
    rule = flagpole.api("GET", "/api/v1/feature-flags/flag-06/environments/production")
    assert rule["enabled"] is True and rule["targets"] == [], rule

    with pytest.raises(NotFoundError):
        workos.feature_flags.add_flag_target(resource_id="org_01NOSUCHORGANIZATION", slug="flag-05")
    with pytest.raises(NotFoundError):
        workos.feature_flags.add_flag_target(resource_id=ids["acme"], slug="no-such-flag")

    # A user or organization Flagpole does not know is evaluated as given
    # (README, "Evaluation: the context as stated"; as ../node does), not 404.
    unknown_org = workos.feature_flags.list_organization_feature_flags("org_nope")
    assert sorted(f.slug for f in unknown_org.data) == evaluate(flagpole, "visitor", "org_nope")
    unknown_user = workos.feature_flags.list_user_feature_flags("user_nope")
    assert sorted(f.slug for f in unknown_user.data) == evaluate(flagpole, "user_nope")


def test_a_users_list_includes_the_flags_of_their_organizations(workos, ids):
    # The SDK's docstring: "This includes feature flags enabled specifically
    # for the user as well as any organizations that the user is a member of."
    workos.feature_flags.enable_feature_flag("flag-07")
    workos.feature_flags.add_flag_target(resource_id=ids["acme"], slug="flag-07")
    workos.feature_flags.enable_feature_flag("flag-08")
    workos.feature_flags.add_flag_target(resource_id=ids["ada"], slug="flag-08")

    ada = workos.feature_flags.list_user_feature_flags(ids["ada"])
    assert sorted(f.slug for f in ada.data) == ["flag-07", "flag-08"]
    bob = workos.feature_flags.list_user_feature_flags(ids["bob"])
    assert "flag-07" not in [f.slug for f in bob.data]


def test_per_target_lists_page_like_the_flag_list(workos, ids):
    for i in (9, 10, 11):
        workos.feature_flags.enable_feature_flag(slug(i))
        workos.feature_flags.add_flag_target(resource_id=ids["globex"], slug=slug(i))
    page = workos.feature_flags.list_organization_feature_flags(ids["globex"], limit=2)
    assert [f.slug for f in page.data] == ["flag-11", "flag-10"]
    assert page.has_more()
    assert [f.slug for f in page.auto_paging_iter()] == ["flag-11", "flag-10", "flag-09"]
    asc = workos.feature_flags.list_organization_feature_flags(ids["globex"], order="asc")
    assert [f.slug for f in asc.data] == ["flag-09", "flag-10", "flag-11"]


def test_the_sdks_lists_agree_with_flagpoles_evaluation(flagpole, workos, ids):
    # Rules of every kind, set through the SDK where it can and through
    # Flagpole's API where the SDK has no call (mode All, mode None).
    flagpole.api("PUT", "/api/v1/feature-flags/flag-00/environments/production", {"mode": "all"})
    workos.feature_flags.enable_feature_flag("flag-00")
    # Mode None keeps its targets, which must not turn it on.
    flagpole.api(
        "PUT",
        "/api/v1/feature-flags/flag-01/environments/production",
        {"mode": "none", "targets": [{"type": "organization", "id": "acme"}]},
    )
    workos.feature_flags.enable_feature_flag("flag-01")
    # Targeted but switched off.
    workos.feature_flags.add_flag_target(resource_id=ids["bob"], slug="flag-03")
    workos.feature_flags.disable_feature_flag("flag-03")
    # A user target and an organization target on one flag.
    workos.feature_flags.add_flag_target(resource_id=ids["ada"], slug="flag-10")
    workos.feature_flags.add_flag_target(resource_id=ids["globex"], slug="flag-10")
    workos.feature_flags.enable_feature_flag("flag-10")

    def slugs(page) -> list[str]:
        return sorted(f.slug for f in page.auto_paging_iter())

    members = {"ada": "acme", "bob": "globex"}
    for user, org in members.items():
        # The per-user list holds the user's own flags and their organization's.
        expected = sorted(set(evaluate(flagpole, ids[user])) | set(evaluate(flagpole, ids[user], ids[org])))
        assert slugs(workos.feature_flags.list_user_feature_flags(ids[user])) == expected, user
    for org in ("acme", "globex"):
        # An organization's list: what a user who is no target gets in it.
        expected = evaluate(flagpole, "user_visitor", ids[org])
        assert slugs(workos.feature_flags.list_organization_feature_flags(ids[org])) == expected, org

    acme = slugs(workos.feature_flags.list_organization_feature_flags(ids["acme"]))
    assert "flag-00" in acme, "mode All is on for everyone"
    assert "flag-01" not in acme, "mode None is off whatever its targets"
    assert "flag-03" not in slugs(workos.feature_flags.list_user_feature_flags(ids["bob"])), "switched off"
    assert "flag-10" in slugs(workos.feature_flags.list_user_feature_flags(ids["ada"]))
    assert "flag-10" in slugs(workos.feature_flags.list_organization_feature_flags(ids["globex"]))
    assert "flag-10" not in acme
