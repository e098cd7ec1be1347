"""OAuth apps end to end: a third-party app (played by httpx, with its own
callback server on loopback) sends a user's real headless Chromium to the
authorize page; the user logs in, approves, and comes back to the app with a
code and the app's state; the app exchanges the code, reads the user, charges
them (once, however often it retries) and calls the models with the official
openai SDK on the token; the user sees the charge and revokes the app in the
console. Denying leaves nothing behind."""

import base64
import hashlib
import json
import os
import secrets
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from urllib.parse import parse_qs, urlencode, urlparse

import httpx
import openai
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ready
from selenium.webdriver.support.ui import WebDriverWait

from harness import ADMIN_TOKEN, CREDITS_PER_USD, DEFAULT_BIN, MODEL, REQUEST_TIMEOUT, hermetic_env, start_gateway, stop, write_config
from test_console import browser, log_in  # noqa: F401  (the fixture)


class Callback(BaseHTTPRequestHandler):
    """The app's redirect URI: it keeps what the browser brought."""

    received = []

    def do_GET(self):
        Callback.received.append(self.path)
        body = b"<html><body><p id='signed-in'>Back in the app.</p></body></html>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def app_server():
    server = HTTPServer(("127.0.0.1", 0), Callback)
    Callback.received = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/callback"
    server.shutdown()


@pytest.fixture
def oauth_gateway(tmp_path, tollgate):
    """A gateway with a 10 % platform fee; alice (a console user with 5
    USD) and bob, the app's owner. Yields (url, alice's id, bob's key)."""
    binary = os.environ.get("TOLLGATE_BIN", DEFAULT_BIN)
    config = write_config(tmp_path, int(tollgate.mock_url.rsplit(":", 1)[1]))
    with open(config, "a") as f:
        f.write("\n[oauth]\nplatform_fee_percent = 10\n")
    made = subprocess.run(
        [binary, "--config", str(config), "user", "create", "alice", "--password", "--email", "alice@example.com"],
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
        env=hermetic_env(TOLLGATE_PASSWORD="correct horse battery"),
    )
    assert made.returncode == 0, made.stderr
    alice = json.loads(made.stdout)["user"]["id"]
    proc, url = start_gateway(tmp_path, config)
    try:
        admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        credited = httpx.post(f"{url}/admin/users/{alice}/balance", json={"amount_usd": "5", "reason": "e2e"},
                              headers=admin, timeout=REQUEST_TIMEOUT)
        assert credited.status_code == 200, credited.text
        bob = httpx.post(f"{url}/admin/users", json={"name": "bob"}, headers=admin, timeout=REQUEST_TIMEOUT)
        assert bob.status_code == 200, bob.text
        yield url, alice, bob.json()["key"], bob.json()["user"]["id"]
    finally:
        stop(proc)


class ThirdPartyApp:
    """What an app developer writes, with httpx: register, send the user to
    the authorize page, exchange the code, call the open API."""

    def __init__(self, gateway, owner_key, callback):
        self.gateway = gateway
        self.http = httpx.Client(base_url=gateway, timeout=REQUEST_TIMEOUT, trust_env=False)
        made = self.http.post("/api/v1/user/oauth/apps/create", headers={"Authorization": f"Bearer {owner_key}"},
                              json={"name": "Essay Bot", "homepage": "https://essay.example",
                                    "redirect_uris": [callback], "scopes": ["user_info", "balance", "charge", "api"]})
        assert made.status_code == 200, made.text
        self.client_id = made.json()["data"]["client_id"]
        self.client_secret = made.json()["data"]["client_secret"]
        self.callback = callback
        self.state = secrets.token_urlsafe(16)
        self.token = None

    def authorize_url(self, scope):
        return self.gateway + "/next/v1/oauth?" + urlencode({
            "response_type": "code", "client_id": self.client_id, "redirect_uri": self.callback,
            "scope": scope, "state": self.state, "charge_limit": str(2 * CREDITS_PER_USD),
            "daily_limit": str(3 * CREDITS_PER_USD), "spend_limit": str(CREDITS_PER_USD)})

    def exchange(self, code):
        issued = self.http.post("/api/v1/user/oauth/issue-token", data={
            "client_id": self.client_id, "client_secret": self.client_secret, "code": code})
        assert issued.status_code == 200, issued.text
        body = issued.json()
        assert body["statusCode"] == 200 and body["message"] == "Issue OAuth Token success"
        self.token = body["data"]["token"]
        return body["data"]

    def call(self, path, **fields):
        return self.http.post("/api/v1/user/oauth/app/" + path, json=fields,
                              headers={"Authorization": f"Bearer {self.token}"})


def approve_in_browser(browser, app, scope, decision="approve"):
    browser.get(app.authorize_url(scope))
    WebDriverWait(browser, 10).until(ready.presence_of_element_located((By.ID, decision)))
    assert browser.find_element(By.ID, "app-name").text == "Essay Bot"
    browser.find_element(By.ID, decision).click()
    WebDriverWait(browser, 10).until(lambda b: b.current_url.startswith(app.callback))
    return parse_qs(urlparse(browser.current_url).query)


def test_an_app_signs_the_user_in_charges_them_once_and_is_revoked(browser, oauth_gateway, app_server):  # noqa: F811
    url, alice, bob_key, bob = oauth_gateway
    app = ThirdPartyApp(url, bob_key, app_server)
    # Not logged in yet: the authorize page leads to the login and back.
    browser.get(app.authorize_url("user_info balance charge api"))
    WebDriverWait(browser, 10).until(ready.presence_of_element_located((By.ID, "login")))
    browser.find_element(By.ID, "login").send_keys("alice")
    browser.find_element(By.ID, "password").send_keys("correct horse battery")
    browser.find_element(By.ID, "submit").click()
    WebDriverWait(browser, 10).until(ready.presence_of_element_located((By.ID, "approve")))
    scopes = [li.get_attribute("data-scope") for li in browser.find_elements(By.CSS_SELECTOR, "#scopes li")]
    assert scopes == ["user_info", "balance", "charge", "api"]
    assert browser.find_element(By.ID, "charge-limit").get_attribute("value") == str(2 * CREDITS_PER_USD)
    browser.find_element(By.ID, "approve").click()
    WebDriverWait(browser, 10).until(lambda b: b.current_url.startswith(app.callback))
    back = parse_qs(urlparse(browser.current_url).query)
    assert back["state"] == [app.state]
    assert browser.find_element(By.ID, "signed-in").text == "Back in the app."

    data = app.exchange(back["code"][0])
    assert data["user_id"] == str(alice) and data["client_id"] == app.client_id
    assert data["token"].startswith("omg-oat-v1-")
    info = app.call("query-user-basic-info").json()
    assert info["data"]["userId"] == str(alice) and info["data"]["userEmail"] == "alice@example.com"
    assert app.call("query-user-balance").json()["data"]["balance"] == str(5 * CREDITS_PER_USD)

    # A charge of 1 USD, retried with the same idempotency key: charged once.
    for _ in range(3):
        charged = app.call("charge-user-fees", amount=str(CREDITS_PER_USD), idempotency_key="essay-42",
                           description="Essay #42")
        assert charged.status_code == 200, charged.text
    assert charged.json()["data"]["replayed"] is True

    # The token calls the models with the official SDK, billed to alice.
    client = openai.OpenAI(api_key=app.token, base_url=url + "/v1", max_retries=0,
                           http_client=httpx.Client(trust_env=False, timeout=REQUEST_TIMEOUT))
    answer = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])
    assert answer.choices[0].message.content

    # Both ledgers, through the operator's API.
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    alice_ledger = httpx.get(f"{url}/admin/users/{alice}/ledger", headers=admin, timeout=REQUEST_TIMEOUT).json()
    charges = [e for e in alice_ledger["data"] if e["kind"] == "app_charge"]
    assert len(charges) == 1 and "Essay Bot" in charges[0]["reason"] and "Essay #42" in charges[0]["reason"]
    bob_ledger = httpx.get(f"{url}/admin/users/{bob}/ledger", headers=admin, timeout=REQUEST_TIMEOUT).json()
    earnings = [e for e in bob_ledger["data"] if e["kind"] == "app_earning"]
    assert len(earnings) == 1

    # The console shows the connected app and its charge; revoke ends it.
    browser.get(url + "/console/apps")
    WebDriverWait(browser, 10).until(ready.presence_of_element_located((By.ID, "connections")))
    rows = browser.find_elements(By.CSS_SELECTOR, "#connections tbody tr")
    assert len(rows) == 1 and "Essay Bot" in rows[0].text
    assert str(CREDITS_PER_USD) in rows[0].find_element(By.CSS_SELECTOR, ".charged").text
    assert "Essay #42" in browser.find_element(By.ID, "charges").text
    rows[0].find_element(By.CSS_SELECTOR, "button.revoke").click()
    WebDriverWait(browser, 10).until(
        lambda b: len(b.find_elements(By.CSS_SELECTOR, "#connections tbody tr")) == 0)
    refused = app.call("query-user-balance")
    assert refused.status_code == 401
    assert refused.json()["errorType"] == "oauth_invalid_token_error"
    with pytest.raises(openai.AuthenticationError):
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])
    # The code worked once: a second exchange fails.
    again = app.http.post("/api/v1/user/oauth/issue-token", data={
        "client_id": app.client_id, "client_secret": app.client_secret, "code": back["code"][0]})
    assert again.status_code == 400 and again.json()["errorType"] == "invalid_grant"


def test_denying_tells_the_app_and_leaves_nothing(browser, oauth_gateway, app_server):  # noqa: F811
    url, alice, bob_key, _ = oauth_gateway
    app = ThirdPartyApp(url, bob_key, app_server)
    log_in(browser, url, "alice", "correct horse battery")
    WebDriverWait(browser, 10).until(ready.presence_of_element_located((By.ID, "balance-usd")))
    back = approve_in_browser(browser, app, "user_info charge", decision="deny")
    assert back == {"error": ["access_denied"], "state": [app.state]}
    browser.get(url + "/console/apps")
    WebDriverWait(browser, 10).until(ready.presence_of_element_located((By.ID, "connections")))
    assert browser.find_elements(By.CSS_SELECTOR, "#connections tbody tr") == []


def test_a_public_app_uses_pkce_for_a_key_of_its_own(browser, oauth_gateway, app_server):  # noqa: F811
    """OpenRouter's keyless flow: no client secret, an S256 challenge, and a
    plain API key with the spending limit the user approved."""
    url, alice, bob_key, _ = oauth_gateway
    app = ThirdPartyApp(url, bob_key, app_server)
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    log_in(browser, url, "alice", "correct horse battery")
    WebDriverWait(browser, 10).until(ready.presence_of_element_located((By.ID, "balance-usd")))
    browser.get(app.authorize_url("api") + "&" + urlencode(
        {"code_challenge": challenge, "code_challenge_method": "S256"}))
    WebDriverWait(browser, 10).until(ready.presence_of_element_located((By.ID, "approve")))
    browser.find_element(By.ID, "approve").click()
    WebDriverWait(browser, 10).until(lambda b: b.current_url.startswith(app.callback))
    code = parse_qs(urlparse(browser.current_url).query)["code"][0]
    wrong = httpx.post(f"{url}/api/v1/auth/keys", json={"code": code, "code_verifier": verifier + "x"},
                       timeout=REQUEST_TIMEOUT)
    assert wrong.status_code == 400
    made = httpx.post(f"{url}/api/v1/auth/keys", timeout=REQUEST_TIMEOUT,
                      json={"code": code, "code_verifier": verifier, "code_challenge_method": "S256"})
    assert made.status_code == 200, made.text
    key = made.json()["key"]
    client = openai.OpenAI(api_key=key, base_url=url + "/v1", max_retries=0,
                           http_client=httpx.Client(trust_env=False, timeout=REQUEST_TIMEOUT))
    assert client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}]).id
    browser.get(url + "/console/keys")
    assert "Essay Bot (OAuth app)" in browser.page_source
