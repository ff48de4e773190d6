"""The pipeline's settings refuse what would fail later, at start, naming the setting."""

import pytest


def test_an_unknown_business_time_zone_is_refused_naming_the_setting() -> None:
    from pydantic import ValidationError

    from crm_pipeline.settings import PipelineSettings

    with pytest.raises(ValidationError, match="business_timezone") as refused:
        PipelineSettings(business_timezone="Mars/Olympus_Mons")
    assert "unknown time zone 'Mars/Olympus_Mons'" in str(refused.value)
