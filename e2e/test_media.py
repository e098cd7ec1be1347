"""Models metered in other units, through the official openai SDK (issue 14).

* speech streamed to a file is byte for byte the mock's audio, charged per
  character;
* a real WAV made by espeak-ng is transcribed, charged by its measured
  seconds;
* images and moderations, charged per image and per call;
* bad input is a 4xx that costs nothing.
"""

import math
import shutil
import subprocess
import wave

import openai
import pytest

from harness import new_marker

# What the mock "speaks" (crates/mock-upstream/src/media.rs, speech_audio).
def mock_speech(text, fmt):
    audio = f"MOCK-AUDIO {fmt}\n".encode()
    while len(audio) < 64 * 1024:
        audio += (text or " ").encode()
    return audio


def by_endpoint(gw, endpoint):
    _, _ = gw.settled()
    return [r for r in gw.usage_records() if r["endpoint"] == endpoint]


def test_speech_streams_to_a_file_byte_for_byte_and_costs_its_characters(gw, tmp_path):
    text = "Hello from Tollgate " + new_marker()
    target = tmp_path / "speech.wav"
    with gw.client().audio.speech.with_streaming_response.create(
        model="tts-test", voice="alloy", input=text, response_format="wav"
    ) as response:
        response.stream_to_file(target)
    gw.metered.append("speech")
    assert target.read_bytes() == mock_speech(text, "wav")
    (record,) = by_endpoint(gw, "audio.speech")
    assert record["unit"] == "characters" and record["quantity"] == len(text)
    # 15 USD per 1M characters.
    assert record["cost_nano_usd"] == len(text) * 15_000


def test_a_real_recording_is_transcribed_and_charged_by_its_seconds(gw, tmp_path):
    espeak = shutil.which("espeak-ng")
    assert espeak, "espeak-ng (Debian package) is required"
    recording = tmp_path / "hello.wav"
    subprocess.run([espeak, "-w", str(recording), "Hello world, this is a test."], check=True, timeout=30)
    with wave.open(str(recording)) as w:
        seconds = math.ceil(w.getnframes() / w.getframerate())
    with open(recording, "rb") as audio:
        transcript = gw.client().audio.transcriptions.create(model="whisper-test", file=audio)
    gw.metered.append("transcription")
    assert transcript.text == f"mock transcript of {recording.stat().st_size} bytes"
    (record,) = by_endpoint(gw, "audio.transcriptions")
    assert record["unit"] == "seconds" and record["quantity"] == seconds
    # 0.006 USD a minute, by the second.
    assert record["cost_nano_usd"] == math.ceil(seconds * 6_000_000 / 60)


def test_images_and_moderations_cost_per_image_and_per_call(gw):
    images = gw.client().images.generate(model="img-test", prompt="a lighthouse", n=2, size="1024x1792")
    gw.metered.append("images")
    assert len(images.data) == 2
    moderation = gw.client().moderations.create(model="mod-test", input=["hello", "there"])
    gw.metered.append("moderation")
    assert len(moderation.results) == 2 and not moderation.results[0].flagged
    (image_record,) = by_endpoint(gw, "images.generations")
    assert image_record["quantity"] == 2 and image_record["cost_nano_usd"] == 160_000_000
    (moderation_record,) = by_endpoint(gw, "moderations")
    assert moderation_record["cost_nano_usd"] == 1_000_000


def test_an_image_edit_through_the_sdk_costs_per_image(gw, tmp_path):
    image = tmp_path / "photo.png"
    image.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(2048))
    mask = tmp_path / "mask.png"
    mask.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(512))
    with open(image, "rb") as i, open(mask, "rb") as m:
        edited = gw.client().images.edit(model="img-test", image=i, mask=m, prompt="add a hat",
                                         n=1, size="1024x1792")
    gw.metered.append("edit")
    assert len(edited.data) == 1
    (record,) = by_endpoint(gw, "images.edits")
    assert record["quantity"] == 1 and record["cost_nano_usd"] == 80_000_000


def test_bad_input_is_refused_and_costs_nothing(gw):
    before = gw.balance()
    with pytest.raises(openai.BadRequestError):
        gw.client().audio.speech.create(model="tts-test", voice="alloy", input="x" * 4097)
    with pytest.raises(openai.BadRequestError):
        gw.client().images.generate(model="img-test", prompt="a cat", size="huge")
    with pytest.raises(openai.BadRequestError):
        gw.client().audio.speech.create(model="img-test", voice="alloy", input="wrong model")
    assert gw.balance() == before
