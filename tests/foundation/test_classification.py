import pytest

from sovforge.classification import Level, allows, max_level, parse_level


@pytest.mark.parametrize("alias, level", [
    ("UNCLASSIFIED", Level.UNCLASSIFIED), ("u", Level.UNCLASSIFIED), ("평문", Level.UNCLASSIFIED),
    ("대외비", Level.RESTRICTED), ("CUI", Level.RESTRICTED), ("fouo", Level.RESTRICTED),
    ("Ⅲ급비밀", Level.CONFIDENTIAL), ("confidential", Level.CONFIDENTIAL),
    ("Ⅱ급비밀", Level.SECRET), ("군사Ⅱ급비밀", Level.SECRET), ("2급비밀", Level.SECRET), ("S", Level.SECRET),
    ("Ⅰ급비밀", Level.TOP_SECRET), ("top secret", Level.TOP_SECRET), ("TOP_SECRET", Level.TOP_SECRET),
    ("TS", Level.TOP_SECRET), (3, Level.SECRET),
])
def test_aliases_map_onto_the_scale(alias, level):
    assert parse_level(alias) is level


def test_scale_is_ordered_and_max_wins():
    assert Level.UNCLASSIFIED < Level.RESTRICTED < Level.CONFIDENTIAL < Level.SECRET < Level.TOP_SECRET
    assert max_level(["U", "대외비", "C"]) is Level.CONFIDENTIAL
    assert max_level([]) is Level.UNCLASSIFIED
    assert allows("SECRET", "대외비") and not allows("RESTRICTED", "Ⅱ급비밀")


def test_unknown_level_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown classification level 'SUPERSECRET'"):
        parse_level("SUPERSECRET")
    with pytest.raises(ValueError, match="out of range"):
        parse_level(9)
