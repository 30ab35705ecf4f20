import pytest
from tiny_models import tiny_model

from saescope.errors import SaescopeError
from saescope.models import SITE_KINDS, Site, family_for


@pytest.mark.parametrize("kind", SITE_KINDS)
def test_native_and_transformerlens_spellings_agree(kind: str) -> None:
    site = Site.parse(f"layers.6.{kind}")
    assert (site.layer, site.kind) == (6, kind)
    assert Site.parse(site.tl_name) == site
    assert Site.parse(site.name) == site


def test_sites_sort_in_forward_order() -> None:
    names = ["layers.1.resid_pre", "layers.0.resid_post", "layers.0.mlp_act", "layers.0.attn_out"]
    assert [s.name for s in sorted(map(Site.parse, names))] == [
        "layers.0.attn_out",
        "layers.0.mlp_act",
        "layers.0.resid_post",
        "layers.1.resid_pre",
    ]


@pytest.mark.parametrize(
    "bad", ["layers.6.resid", "blocks.6.hook_foo", "resid_post", "layers.x.mlp_out"]
)
def test_unknown_site_lists_the_valid_ones(bad: str) -> None:
    with pytest.raises(SaescopeError, match="resid_post"):
        Site.parse(bad)


def test_layer_out_of_range_names_the_layer_count() -> None:
    model = tiny_model("llama")
    with pytest.raises(SaescopeError, match=r"has 3 layers.*layer 7"):
        model.site("layers.7.resid_post")


def test_unsupported_family_lists_supported_types() -> None:
    with pytest.raises(SaescopeError, match=r"'mamba'.*gemma3_text.*gpt2"):
        family_for("mamba")
