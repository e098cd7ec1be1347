"""The web console in a real headless Chromium (Debian's chromium and
chromium-driver, driven by selenium): an account made with the CLI logs in,
makes a key in the browser, uses it with the official openai SDK, and sees
the request and its exact cost on its dashboard; logging out ends the
session. Each test saves a
screenshot when it fails (next to its temporary files)."""

import json
import os
import shutil
import subprocess

import httpx
import openai
import pytest
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ready
from selenium.webdriver.support.ui import WebDriverWait

from harness import ADMIN_TOKEN, DEFAULT_BIN, MODEL, REQUEST_TIMEOUT, hermetic_env, start_gateway, stop, write_config


@pytest.fixture
def browser(request, tmp_path):
    chromium, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    assert chromium and driver_path, "chromium and chromium-driver (Debian packages) are required"
    options = Options()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--window-size=1280,900"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    driver.set_page_load_timeout(REQUEST_TIMEOUT)
    yield driver
    failed = getattr(request.node, "rep_call", None)
    if failed is not None and failed.failed:
        driver.save_screenshot(str(tmp_path / f"{request.node.name}.png"))
    driver.quit()


@pytest.fixture
def console(tmp_path, tollgate):
    """A gateway of the test's own, with a console account made by the CLI:
    (url, key)."""
    binary = os.environ.get("TOLLGATE_BIN", DEFAULT_BIN)
    mock_port = int(tollgate.mock_url.rsplit(":", 1)[1])
    config = write_config(tmp_path, mock_port)
    made = subprocess.run(
        [binary, "--config", str(config), "user", "create", "alice", "--password", "--admin",
         "--email", "alice@example.com"],
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
        env=hermetic_env(TOLLGATE_PASSWORD="correct horse battery"),
    )
    assert made.returncode == 0, made.stderr
    created = json.loads(made.stdout)
    proc, url = start_gateway(tmp_path, config)
    try:
        credited = httpx.post(f"{url}/admin/users/{created['user']['id']}/balance",
                              json={"amount_usd": "5", "reason": "e2e"},
                              headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=REQUEST_TIMEOUT)
        assert credited.status_code == 200, credited.text
        yield url, created["key"]
    finally:
        stop(proc)


def log_in(browser, url, login, password):
    browser.get(url + "/console/")
    WebDriverWait(browser, 10).until(ready.presence_of_element_located((By.ID, "login")))
    browser.find_element(By.ID, "login").send_keys(login)
    browser.find_element(By.ID, "password").send_keys(password)
    browser.find_element(By.ID, "submit").click()


def test_a_user_logs_in_uses_a_key_and_sees_the_request_and_its_cost(browser, console):
    url, _ = console
    log_in(browser, url, "alice@example.com", "correct horse battery")
    balance = WebDriverWait(browser, 10).until(ready.presence_of_element_located((By.ID, "balance-usd")))
    assert balance.text.startswith("5"), balance.text
    # A key made in the console, shown once, used with the SDK.
    browser.find_element(By.ID, "nav-keys").click()
    WebDriverWait(browser, 10).until(ready.presence_of_element_located((By.ID, "remark")))
    browser.find_element(By.ID, "remark").send_keys("made in the browser")
    browser.find_element(By.ID, "create").click()
    key = WebDriverWait(browser, 10).until(ready.presence_of_element_located((By.ID, "secret"))).text
    assert key.startswith("sk-")
    browser.get(url + "/console/")
    client = openai.OpenAI(api_key=key, base_url=url + "/v1", max_retries=0,
                           http_client=httpx.Client(trust_env=False, timeout=REQUEST_TIMEOUT))
    answer = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])
    assert answer.choices[0].message.content
    usage = httpx.get(url + "/v1/usage", headers={"Authorization": f"Bearer {key}"}, timeout=REQUEST_TIMEOUT)
    (record,) = usage.json()["data"]
    # The dashboard shows it, with its exact cost.
    def shown(driver):
        driver.refresh()
        rows = driver.find_elements(By.CSS_SELECTOR, "#recent tbody tr")
        return rows if rows else False
    rows = WebDriverWait(browser, 15, poll_frequency=0.5).until(shown)
    assert MODEL in rows[0].text
    assert rows[0].find_element(By.CSS_SELECTOR, ".cost").text == record["cost_usd"]
    # And in the chart, drawn in the page by the vendored uPlot.
    assert browser.find_elements(By.CSS_SELECTOR, "#chart canvas"), browser.page_source[:500]
    assert MODEL in browser.find_element(By.ID, "chart").text
    browser.find_element(By.ID, "logout").click()
    WebDriverWait(browser, 10).until(ready.presence_of_element_located((By.ID, "login")))
    browser.get(url + "/console/")
    assert "/console/login" in browser.current_url


def test_a_wrong_password_is_refused_in_the_page(browser, console):
    url, _ = console
    log_in(browser, url, "alice", "not the password")
    error = WebDriverWait(browser, 10).until(ready.presence_of_element_located((By.ID, "error")))
    assert "Wrong user name or password" in error.text


def cli_user(tmp_path, name, password, *extra):
    binary = os.environ.get("TOLLGATE_BIN", DEFAULT_BIN)
    made = subprocess.run(
        [binary, "--config", str(tmp_path / "tollgate.toml"), "user", "create", name, "--password", *extra],
        capture_output=True, text=True, timeout=60, cwd=tmp_path, env=hermetic_env(TOLLGATE_PASSWORD=password),
    )
    assert made.returncode == 0, made.stderr
    return json.loads(made.stdout)


def test_an_admin_credits_a_user_who_sees_it_and_cannot_reach_others(browser, console, tmp_path):
    url, _ = console
    bob = cli_user(tmp_path, "bob", "bob's long password")
    log_in(browser, url, "alice", "correct horse battery")
    WebDriverWait(browser, 10).until(ready.presence_of_element_located((By.ID, "nav-users")))
    browser.get(f"{url}/console/admin/users/{bob['user']['id']}")
    browser.find_element(By.ID, "amount").send_keys("3.25")
    browser.find_element(By.ID, "reason").send_keys("e2e credit")
    before = browser.find_element(By.ID, "user-balance")
    browser.find_element(By.ID, "change-balance").click()
    WebDriverWait(browser, 10).until(ready.staleness_of(before))
    shown = WebDriverWait(browser, 10).until(ready.presence_of_element_located((By.ID, "user-balance")))
    assert shown.text.startswith("3.25"), shown.text
    browser.find_element(By.ID, "logout").click()
    # The logout's answer first: a page loaded before it would still be Alice's.
    WebDriverWait(browser, 10).until(ready.presence_of_element_located((By.ID, "login")))
    # Bob sees his credit, and nothing of Alice's.
    log_in(browser, url, "bob", "bob's long password")
    balance = WebDriverWait(browser, 10).until(ready.presence_of_element_located((By.ID, "balance-usd")))
    assert balance.text.startswith("3.25"), balance.text
    browser.get(f"{url}/console/admin/users/1")
    assert "Not found" in browser.page_source
    # A form posted without its CSRF token changes nothing.
    forged = httpx.post(url + "/console/keys", data={"remark": "forged"},
                        cookies={c["name"]: c["value"] for c in browser.get_cookies()}, timeout=REQUEST_TIMEOUT)
    assert forged.status_code in (400, 403), forged.status_code
    browser.get(url + "/console/keys")
    assert "forged" not in browser.page_source


def test_logins_are_throttled_in_the_page(browser, console):
    url, _ = console
    for _ in range(5):
        log_in(browser, url, "alice", "a wrong guess")
        WebDriverWait(browser, 10).until(ready.presence_of_element_located((By.ID, "error")))
    log_in(browser, url, "alice", "correct horse battery")
    error = WebDriverWait(browser, 10).until(ready.presence_of_element_located((By.ID, "error")))
    assert "Too many failed attempts" in error.text


@pytest.fixture
def open_console(tmp_path, tollgate):
    """A gateway whose console is open to sign-up, with a free balance."""
    mock_port = int(tollgate.mock_url.rsplit(":", 1)[1])
    config = write_config(tmp_path, mock_port)
    with open(config, "a") as f:
        f.write('\n[console]\nsignup = "open"\nsignup_free_usd = "1.5"\n')
    proc, url = start_gateway(tmp_path, config)
    try:
        yield url
    finally:
        stop(proc)


def test_a_visitor_signs_up_starts_with_the_free_balance_and_logs_in_again(browser, open_console):
    url = open_console
    browser.get(url + "/console/signup")
    WebDriverWait(browser, 10).until(ready.presence_of_element_located((By.ID, "name")))
    browser.find_element(By.ID, "name").send_keys("carol")
    browser.find_element(By.ID, "email").send_keys("carol@example.com")
    browser.find_element(By.ID, "password").send_keys("carol's long password")
    browser.find_element(By.ID, "submit").click()
    # Logged in at once, on the keys page (the first key is there).
    WebDriverWait(browser, 10).until(ready.presence_of_element_located((By.ID, "create-key")))
    browser.get(url + "/console/")
    balance = WebDriverWait(browser, 10).until(ready.presence_of_element_located((By.ID, "balance-usd")))
    assert balance.text.startswith("1.5"), balance.text
    browser.find_element(By.ID, "logout").click()
    WebDriverWait(browser, 10).until(ready.presence_of_element_located((By.ID, "login")))
    log_in(browser, url, "carol@example.com", "carol's long password")
    balance = WebDriverWait(browser, 10).until(ready.presence_of_element_located((By.ID, "balance-usd")))
    assert balance.text.startswith("1.5"), balance.text
    # A second account of the same name is refused in the page.
    browser.find_element(By.ID, "logout").click()
    WebDriverWait(browser, 10).until(ready.presence_of_element_located((By.ID, "login")))
    browser.get(url + "/console/signup")
    browser.find_element(By.ID, "name").send_keys("carol")
    browser.find_element(By.ID, "password").send_keys("another long password")
    browser.find_element(By.ID, "submit").click()
    WebDriverWait(browser, 10).until(ready.presence_of_element_located((By.ID, "error")))


PAGES = [  # (file name, path, an element the page must have)
    ("dashboard", "/console/", "chart"),
    ("keys", "/console/keys", "create-key"),
    ("usage", "/console/usage", "usage"),
    ("admin-users", "/console/admin/users", "users"),
    ("admin-usage", "/console/admin/usage", "total-cost"),
    ("channels", "/console/admin/channels", "channels"),
    ("apps", "/console/apps", "app-form"),
    ("admin-apps", "/console/admin/apps", "all-apps"),
]


def test_the_main_pages_render_on_a_desktop_and_a_phone(browser, console):
    """Every main page shows its content, at desktop width and at a phone's
    (where nothing is wider than the screen). With TOLLGATE_SCREENSHOTS set
    to a folder, each page is saved there as a PNG (docs/ holds them)."""
    url, key = console
    client = openai.OpenAI(api_key=key, base_url=url + "/v1", max_retries=0,
                           http_client=httpx.Client(trust_env=False, timeout=REQUEST_TIMEOUT))
    for _ in range(3):
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])
    log_in(browser, url, "alice", "correct horse battery")
    WebDriverWait(browser, 10).until(ready.presence_of_element_located((By.ID, "balance-usd")))
    shots = os.environ.get("TOLLGATE_SCREENSHOTS")
    for width, height, suffix in ((1280, 900, ""), (390, 844, "-phone")):
        browser.set_window_size(width, height)
        for name, path, element in PAGES:
            browser.get(url + path)
            WebDriverWait(browser, 10).until(ready.presence_of_element_located((By.ID, element)))
            if suffix:
                overflow = browser.execute_script(
                    "return document.documentElement.scrollWidth - window.innerWidth")
                assert overflow <= 1, f"{path} is {overflow} px wider than a phone"
            if shots:
                browser.save_screenshot(os.path.join(shots, f"console-{name}{suffix}.png"))
    # The usage page lists the three requests.
    browser.set_window_size(1280, 900)
    browser.get(url + "/console/usage")
    assert len(browser.find_elements(By.CSS_SELECTOR, "#usage tbody tr")) == 3



@pytest.fixture
def stripe_console(tmp_path, tollgate):
    """A gateway with top-ups through the fake Stripe (crates/fake-stripe,
    its binary beside the tollgate one), which sends its signed webhooks to
    the gateway, and alice's console account: (gateway url, Stripe url)."""
    binary = os.environ.get("TOLLGATE_BIN", DEFAULT_BIN)
    fake_binary = os.path.join(os.path.dirname(binary), "fake-stripe")
    assert os.access(fake_binary, os.X_OK), f"no fake-stripe binary at {fake_binary} (cargo build -p fake-stripe)"
    fake = subprocess.Popen(
        [fake_binary, "--port", "0", "--secret-key", "sk_test_e2e", "--webhook-secret", "whsec_e2e"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=hermetic_env(),
    )
    proc = None
    try:
        line = fake.stdout.readline().strip()
        assert line.startswith("listening on "), line
        stripe_url = line.removeprefix("listening on ")
        config = write_config(tmp_path, int(tollgate.mock_url.rsplit(":", 1)[1]))
        with open(config, "a") as f:
            f.write(f'\n[payments]\ncurrency = "usd"\nmin_amount = 5\nmax_amount = 500\n'
                    f'preset_amounts = [10, 20]\n\n[payments.stripe]\nsecret_key = "sk_test_e2e"\n'
                    f'webhook_secrets = ["whsec_e2e"]\napi_base = "{stripe_url}"\n')
        made = subprocess.run(
            [binary, "--config", str(config), "user", "create", "alice", "--password"],
            capture_output=True, text=True, timeout=60, cwd=tmp_path,
            env=hermetic_env(TOLLGATE_PASSWORD="correct horse battery"),
        )
        assert made.returncode == 0, made.stderr
        proc, url = start_gateway(tmp_path, config)
        webhooks = httpx.post(f"{stripe_url}/_fake/webhooks",
                              json={"on": True, "url": f"{url}/api/v1/pay/stripe/webhook"}, timeout=REQUEST_TIMEOUT)
        assert webhooks.status_code == 200, webhooks.text
        yield url, stripe_url
    finally:
        stop(proc)
        fake.terminate()
        fake.wait(timeout=10)


def test_the_top_up_page_sends_the_user_to_checkout_and_the_payment_credits(browser, stripe_console):
    url, stripe_url = stripe_console
    log_in(browser, url, "alice", "correct horse battery")
    WebDriverWait(browser, 10).until(ready.presence_of_element_located((By.ID, "balance-usd")))
    browser.find_element(By.ID, "nav-topup").click()
    WebDriverWait(browser, 10).until(ready.presence_of_element_located((By.ID, "topup-form")))
    # A preset fills the amount; checkout goes to Stripe's page.
    browser.find_element(By.CSS_SELECTOR, "button.preset[data-amount='20']").click()
    assert browser.find_element(By.ID, "amount").get_attribute("value") == "20"
    browser.find_element(By.ID, "pay-checkout").click()
    WebDriverWait(browser, 10).until(lambda b: "/c/pay/cs_" in b.current_url)
    assert browser.current_url.startswith(stripe_url), browser.current_url
    # Paying there sends the signed webhook, then the browser back.
    browser.find_element(By.ID, "pay").click()
    notice = WebDriverWait(browser, 10).until(ready.presence_of_element_located((By.ID, "notice")))
    assert browser.current_url.startswith(url + "/console/topup"), browser.current_url
    assert notice.text
    state = browser.find_element(By.CSS_SELECTOR, "#orders tbody tr .state")
    assert state.text == "paid", state.text
    browser.get(url + "/console/")
    balance = WebDriverWait(browser, 10).until(ready.presence_of_element_located((By.ID, "balance-usd")))
    assert balance.text.startswith("20"), balance.text
