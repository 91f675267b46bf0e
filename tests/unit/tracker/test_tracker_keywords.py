"""Opt-out and opt-in keyword matching of inbound messages."""

from __future__ import annotations

import pytest

from services.tracker.keywords import Action, classify


@pytest.mark.parametrize(
    "body", ["STOP", "stop", "  Stop \n", "STOPALL", "unsubscribe", "Cancel", "END", "quit"]
)
def test_stop_family_words_opt_out(body: str) -> None:
    assert classify(body) is Action.OPT_OUT


def test_the_whatsapp_stop_promotions_reply_opts_out() -> None:
    assert classify("Stop  promotions") is Action.OPT_OUT


@pytest.mark.parametrize("body", ["START", " unstop "])
def test_start_and_unstop_opt_in(body: str) -> None:
    assert classify(body) is Action.OPT_IN


@pytest.mark.parametrize("body", ["please stop", "stop!", "don't stop me now", "", "   ", "started"])
def test_only_the_whole_message_counts(body: str) -> None:
    assert classify(body) is None


def test_tenant_words_in_other_languages_count_too() -> None:
    assert classify("  BAJA ", extra_opt_out=["baja"]) is Action.OPT_OUT
    assert classify("Ärger", extra_opt_out=["ÄRGER"]) is Action.OPT_OUT
    assert classify("alta", extra_opt_in=["Alta"]) is Action.OPT_IN
    assert classify("baja") is None


def test_twilio_advanced_opt_out_type_is_trusted() -> None:
    assert classify("arrêtez", opt_out_type="STOP") is Action.OPT_OUT
    assert classify("whatever", opt_out_type="start") is Action.OPT_IN
    assert classify("help", opt_out_type="HELP") is None
