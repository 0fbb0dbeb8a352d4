from pathlib import Path

import pytest

from sovforge.config import RecipeError, load_recipe, parse_recipe

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "examples").glob("*.yaml"))


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_every_shipped_recipe_validates(path):
    if path.name == "tenants.yaml":  # the GPU service's tenants file: its own schema
        from sovforge.jobs.config import load_tenants

        assert load_tenants(path)
        return
    load_recipe(path)


def test_examples_exist():
    assert any(p.name == "demo.yaml" for p in EXAMPLES)


def test_first_line_of_each_recipe_is_its_command():
    for path in EXAMPLES:
        first = path.read_text(encoding="utf-8").splitlines()[0]
        assert first.startswith("# ") and "sovforge" in first, f"{path.name}: first line should be the command"


def test_unknown_key_is_rejected_with_its_path():
    with pytest.raises(RecipeError) as err:
        parse_recipe({"name": "x", "base": {"preset": "tiny", "vocab_sise": 100}})
    assert "base.vocab_sise: unknown key" in str(err.value)
    with pytest.raises(RecipeError, match="stages: .*unknown stage"):
        parse_recipe({"stages": ["ingest", "train"]})
    with pytest.raises(RecipeError, match="must be a YAML mapping"):
        parse_recipe(["base"])


def test_bad_values_name_the_field(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("base:\n  preset: huge\n", encoding="utf-8")
    with pytest.raises(RecipeError, match="base.preset"):
        load_recipe(bad)
    with pytest.raises(RecipeError, match="no such recipe"):
        load_recipe(tmp_path / "missing.yaml")
    (tmp_path / "broken.yaml").write_text("base: [unclosed", encoding="utf-8")
    with pytest.raises(RecipeError, match="not valid YAML"):
        load_recipe(tmp_path / "broken.yaml")


def test_every_config_field_is_documented():
    from pydantic import BaseModel

    from sovforge.config import Recipe

    seen = set()

    def walk(model: type[BaseModel]):
        if model in seen:
            return
        seen.add(model)
        for name, field in model.model_fields.items():
            assert field.description, f"{model.__name__}.{name} has no docstring"
            for arg in getattr(field.annotation, "__args__", ()) + (field.annotation,):
                if isinstance(arg, type) and issubclass(arg, BaseModel):
                    walk(arg)

    walk(Recipe)
