"""Users' files with real clients and the real binary.

* An image uploaded with httpx (multipart) reaches a model through the
  official openai SDK by reference, inlined for the upstream; it downloads
  whole and by range.
* A 2 GB upload is streamed: the gateway's peak RSS stays flat.
* `kill -9` in the middle of an upload leaves nothing once the gateway is
  back: the partial bytes and their row are removed at start.
"""

import base64
import hashlib
import os
import signal
import sqlite3
import threading
import time
import uuid

import httpx

from harness import (
    MODEL,
    REQUEST_TIMEOUT,
    new_marker,
    start_gateway,
    stop,
    wait_for,
    write_config,
)

UPLOAD = "/api/v1/user/files/upload"


def upload(http, base_url, key, data, name, **fields):
    files = {"file": (name, data, "image/png")}
    form = {"purpose": "CHAT", **fields}
    r = http.post(base_url + UPLOAD, headers={"Authorization": f"Bearer {key}"}, files=files, data=form)
    return r.status_code, r.json()


def test_an_uploaded_image_reaches_a_model_by_reference(gw):
    image = os.urandom(2048)
    status, body = upload(gw.http, gw.base_url, gw.key, image, "photo.png", tags="e2e")
    assert status == 200 and body["message"] == "File Upload Success", body
    file_id = body["data"]["fileUniqueID"]
    assert len(file_id) == 21 and body["data"]["sha256"] == hashlib.sha256(image).hexdigest()

    marker = new_marker("file")
    answer = gw.client().chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": [
            {"type": "text", "text": "Describe " + marker},
            {"type": "image_url", "image_url": {"url": f"tollgate-file://{file_id}"}},
        ]}],
    )
    gw.metered.append(answer.id)
    assert answer.choices[0].message.content
    (sent,) = gw.mock_log(marker)
    part = sent["body"]["messages"][0]["content"][1]
    assert part["image_url"]["url"] == "data:image/png;base64," + base64.b64encode(image).decode()

    auth = {"Authorization": f"Bearer {gw.key}"}
    own = f"{gw.base_url}/api/v1/user/files/download/{file_id}"
    whole = gw.http.get(own, headers=auth)
    assert whole.status_code == 200 and whole.content == image
    part = gw.http.get(own, headers={**auth, "Range": "bytes=0-99"})
    assert part.status_code == 206 and part.content == image[:100]
    # Without the key: nothing (and no hint that it exists).
    assert gw.http.get(own).status_code == 401
    assert gw.http.get(f"{gw.base_url}/api/v1/user/files/public/{file_id}").status_code == 404
    deleted = gw.http.post(gw.base_url + "/api/v1/user/files/delete", headers=auth, json={"fileUniqueID": file_id})
    assert deleted.status_code == 200, deleted.text


def own_gateway(tmp_path, tollgate, storage):
    """A gateway of this test's own (its own database and files), on the
    session's mock, with a `[storage]` section; returns (process, url, key)."""
    mock_port = int(tollgate.mock_url.rsplit(":", 1)[1])
    config = write_config(tmp_path, mock_port)
    config.write_text(config.read_text() + "\n[storage]\n" + storage)
    proc, url = start_gateway(tmp_path, config)
    return proc, url


def new_key(http, url):
    r = http.post(url + "/admin/users", json={"name": "files-" + uuid.uuid4().hex[:8]},
                  headers={"Authorization": "Bearer e2e-admin-token-0123456789"})
    assert r.status_code == 200, r.text
    return r.json()["key"]


def multipart(boundary, chunks, name="big.bin"):
    """A multipart/form-data body, streamed: the purpose, then the file."""
    yield (
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\n0\r\n"
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n"
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    yield from chunks
    yield f"\r\n--{boundary}--\r\n".encode()


def peak_rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise AssertionError("no VmHWM")


def stream_upload(http, url, key, block, count):
    """Uploads `count` times `block` as one file, streamed; returns (data, seconds)."""
    boundary = uuid.uuid4().hex
    started = time.monotonic()
    r = http.post(
        url + UPLOAD,
        headers={"Authorization": f"Bearer {key}", "Content-Type": f"multipart/form-data; boundary={boundary}"},
        content=multipart(boundary, (block for _ in range(count))),
    )
    took = time.monotonic() - started
    assert r.status_code == 200, r.text
    return r.json()["data"], took


def test_a_2_gb_upload_is_streamed_with_flat_memory(tmp_path, tollgate):
    gib = 1024**3
    proc, url = own_gateway(tmp_path, tollgate, f"max_file_bytes = {3 * gib}\nmax_total_bytes = {3 * gib}\n")
    try:
        with httpx.Client(trust_env=False, timeout=REQUEST_TIMEOUT * 10) as http:
            key = new_key(http, url)
            auth = {"Authorization": f"Bearer {key}"}
            block = os.urandom(1024 * 1024)
            before = peak_rss_kb(proc.pid)
            count = 2 * gib // len(block)
            data, took = stream_upload(http, url, key, block, count)
            expected = hashlib.sha256()
            for _ in range(count):
                expected.update(block)
            assert data["size"] == 2 * gib and data["sha256"] == expected.hexdigest()
            peak = peak_rss_kb(proc.pid)
            print(f"2 GiB upload: {2 * gib / took / 1e6:.0f} MB/s; peak RSS {before} kB before, {peak} kB during")
            # Flat: a few buffers (and what the allocator keeps of them),
            # whatever the size; a buffered body would take 2 GB.
            assert peak < 256 * 1024, (before, peak)
            deleted = http.post(url + "/api/v1/user/files/delete", headers=auth,
                                json={"fileUniqueID": data["fileUniqueID"]})
            assert deleted.status_code == 200
    finally:
        stop(proc)


def test_kill_9_mid_upload_leaves_nothing_once_back(tmp_path, tollgate):
    proc, url = own_gateway(tmp_path, tollgate, "upload_ttl_secs = 1\n")
    partial = tmp_path / "data" / "files" / ".partial"
    sent_some = threading.Event()
    hold = threading.Event()

    def slow_chunks():
        for _ in range(64):
            yield b"x" * 65536
        sent_some.set()
        hold.wait(30)  # the gateway dies meanwhile
        yield b"never"

    http = httpx.Client(trust_env=False, timeout=REQUEST_TIMEOUT)
    db = None
    try:
        key = new_key(http, url)
        boundary = uuid.uuid4().hex

        def send():
            try:
                http.post(url + UPLOAD, headers={"Authorization": f"Bearer {key}",
                                                 "Content-Type": f"multipart/form-data; boundary={boundary}"},
                          content=multipart(boundary, slow_chunks()))
            except httpx.HTTPError:
                pass

        sender = threading.Thread(target=send)
        sender.start()
        try:
            assert sent_some.wait(REQUEST_TIMEOUT)
            wait_for(lambda: partial.exists() and any(p.stat().st_size > 0 for p in partial.iterdir()),
                     REQUEST_TIMEOUT, "the partial upload on disk")
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
        finally:
            hold.set()
            sender.join(REQUEST_TIMEOUT)
        left = list(partial.iterdir())
        assert len(left) == 1, left
        db = sqlite3.connect(tmp_path / "tollgate.db")
        assert db.execute("SELECT state FROM files").fetchall() == [("uploading",)]
        # Past the upload's time (1 s, and the sweeper's margin), back up:
        # the start-up sweep removes the bytes, then the row.
        time.sleep(3.5)
        proc, url = start_gateway(tmp_path, tmp_path / "tollgate.toml")
        wait_for(lambda: not any(partial.iterdir()), REQUEST_TIMEOUT, "the partial upload removed")
        wait_for(lambda: db.execute("SELECT COUNT(*) FROM files").fetchone()[0] == 0,
                 REQUEST_TIMEOUT, "its row removed")
    finally:
        if db is not None:
            db.close()
        http.close()
        stop(proc)
