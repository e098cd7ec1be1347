"""OhMyGPT's search, drawing and Azure speech routes with httpx, each in
both body encodings it accepts, charged exactly in their units (issue 14).
"""

import pytest

SEARCH = "/api/v1/openapi/search"


def post(gw, path, form=None, json=None):
    return gw.http.post(gw.base_url + path, headers={"Authorization": f"Bearer {gw.key}"}, data=form, json=json)


def costs(gw, endpoint):
    gw.settled()
    return sorted(r["cost_nano_usd"] for r in gw.usage_records() if r["endpoint"] == endpoint)


def test_search_by_get_bearer_or_key_and_serper_by_form_or_json(gw):
    url = gw.base_url + SEARCH + "/google-search/v1"
    bearer = gw.http.get(url, params={"q": "tollgate gateway", "num": "3"},
                         headers={"Authorization": f"Bearer {gw.key}"})
    assert bearer.status_code == 200, bearer.text
    assert bearer.json()["queries"]["request"][0]["cx"] == "e2e-engine"
    by_key = gw.http.get(url, params={"q": "tollgate", "key": gw.key})
    assert by_key.status_code == 200, by_key.text
    for response in (post(gw, SEARCH + "/serper/v1", form={"q": "rust", "gl": "us", "num": "5"}),
                     post(gw, SEARCH + "/serper/v1", json={"q": "rust", "page": 2})):
        assert response.status_code == 200, response.text
        assert len(response.json()["organic"]) == 2
    gw.metered.extend(["google", "google", "serper", "serper"])
    assert costs(gw, "search.google") == [5_000_000, 5_000_000]
    assert costs(gw, "search.serper") == [1_000_000, 1_000_000]
    # No query: OhMyGPT's envelope, and nothing charged.
    missing = gw.http.get(url, headers={"Authorization": f"Bearer {gw.key}"})
    assert missing.status_code == 400 and missing.json()["statusCode"] == 400


@pytest.mark.parametrize("encoding", ["form", "json"])
def test_flux_and_imagine_draw_in_both_encodings(gw, encoding):
    fields = {"prompt": f"a lighthouse ({encoding})", "response_format": "url"}
    flux = post(gw, "/api/v1/ai/draw/flux/schnell", **{encoding: fields})
    assert flux.status_code == 200, flux.text
    assert flux.json()["statusCode"] == 200 and flux.json()["data"]["outputs"][0]["url"]
    imagine = post(gw, "/api/v1/ai/draw/nd/imagine",
                   **{encoding: {"prompt": "a castle", "negative_prompt": "fog", "size": "512x512"}})
    assert imagine.status_code == 200, imagine.text
    assert imagine.json()["data"][0]["url"]
    gw.metered.extend(["flux", "imagine"])
    assert costs(gw, "draw.flux")[-1] == 3_000_000
    assert costs(gw, "draw.imagine")[-1] == 20_000_000


@pytest.mark.parametrize("encoding", ["form", "json"])
def test_azure_speech_in_both_encodings_costs_its_spoken_characters(gw, encoding):
    text = f"Hello & welcome, {encoding}"
    response = post(gw, "/api/v1/openapi/azure/tts/v1",
                    **{encoding: {"text": text, "voice": "en-US-JennyNeural"}})
    assert response.status_code == 200, response.text
    assert response.content.startswith(b"MOCK-AZURE audio-24khz-48kbitrate-mono-mp3\n")
    gw.metered.append("azure")
    gw.settled()
    record = [r for r in gw.usage_records() if r["endpoint"] == "azure.tts"][0]
    assert record["unit"] == "characters"
    # 16 USD per 1M characters of the spoken text.
    assert record["cost_nano_usd"] == record["quantity"] * 16_000
    # The text as the SSML carries it (`&` is `&amp;`).
    spoken = len(text.replace("&", "&amp;"))
    assert spoken in [r["quantity"] for r in gw.usage_records() if r["endpoint"] == "azure.tts"]
