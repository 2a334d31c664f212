import pytest
from carbontrack.operator.mass import format_mass, parse_mass

from carbontrack.core.errors import ConfigError


@pytest.mark.parametrize(
    ("text", "grams"),
    [
        ("800g", 800.0),
        ("250kg", 250_000.0),
        ("1.5t", 1_500_000.0),
        ("12mg", 0.012),
        ("0.5 kg", 500.0),
        ("  3t ", 3e6),
        ("007g", 7.0),
    ],
)
def test_parse_mass_in_grams(text: str, grams: float) -> None:
    assert parse_mass(text) == pytest.approx(grams, rel=1e-12)


@pytest.mark.parametrize(
    "text", ["", "800", "kg", "-5kg", "+5kg", "1e3g", "5 KG", "5lb", "5 tons", "0g", "0.0kg",
             "1,5t", "nan g", ".5kg", "5.kg"]
)
def test_parse_mass_rejects_with_actionable_message(text: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_mass(text)
    message = str(info.value)
    assert repr(text) in message
    assert "\n" not in message
    assert ("unit mg, g, kg or t" in message) or ("greater than zero" in message)


def test_parse_mass_rejects_non_string() -> None:
    with pytest.raises(ConfigError):
        parse_mass(800)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("grams", "text"),
    [
        (0.0, "0g"),
        (0.012, "12mg"),
        (950.0, "950g"),
        (999.4, "999g"),
        (1234.0, "1.23kg"),
        (12_345.0, "12.3kg"),
        (250_000.0, "250kg"),
        (1_500_000.0, "1.5t"),
        (1_234_567_000.0, "1235t"),
    ],
)
def test_format_mass(grams: float, text: str) -> None:
    assert format_mass(grams) == text


@pytest.mark.parametrize("text", ["800g", "250kg", "1.5t", "12mg"])
def test_format_of_parse_round_trips(text: str) -> None:
    assert format_mass(parse_mass(text)) == text
