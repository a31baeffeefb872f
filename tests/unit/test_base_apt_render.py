"""The base role's apt setting as Salt renders it for a node of the shipped inventory: the
languages apt fetches (none by default) are written before the base packages, whose refresh is
the highstate's first; a value apt does not know is refused, naming it."""

from __future__ import annotations

import pytest

from tests.state_render import RenderRefused, StateRenderer, state_args


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    return StateRenderer(tmp_path_factory.mktemp("render-base-apt"), "agent-fat")


def test_no_translations_by_default_and_written_before_the_packages(node):
    rendered = node.show_sls("base.packages")
    languages = state_args(rendered, "base-apt-languages")
    assert languages["name"] == "/etc/apt/apt.conf.d/60saltyard-languages"
    assert 'Acquire::Languages { "none"; };' in languages["contents"]
    assert {"file": "base-apt-languages"} in state_args(rendered, "base-packages")["require"]


def test_pillar_names_the_languages(node):
    rendered = node.show_sls(
        "base.packages", pillar={"base": {"apt": {"languages": ["en", "pt_BR"]}}}
    )
    contents = state_args(rendered, "base-apt-languages")["contents"]
    assert 'Acquire::Languages { "en"; "pt_BR"; };' in contents


@pytest.mark.parametrize("value", ["english", "", 7, "en; Acquire::x"])
def test_a_language_apt_does_not_know_is_refused_naming_it(node, value):
    with pytest.raises(RenderRefused) as refused:
        node.show_sls("base.packages", pillar={"base": {"apt": {"languages": [value]}}})
    assert "pillar base:apt:languages:" in str(refused.value)
    assert "is not a language apt knows" in str(refused.value)
