// Headless Chromium (Debian's /usr/bin/chromium, driven by playwright-core) with a fresh
// profile, and a page wrapper for the tests: sign in, navigate like a user (client-side, timed
// from navigation to the page's `data-loaded`), full loads, screenshots, and a record of every
// request and console error so the tests can prove the UI needs nothing from elsewhere.

import { mkdtempSync, mkdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

export const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
export const LOCALE = 'en-US';
export const TIME_ZONE = 'Asia/Tokyo';
const ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'];

export async function launch({ screenshots }) {
  const profile = mkdtempSync(join(tmpdir(), 'telemetryd-chromium-'));
  mkdirSync(screenshots, { recursive: true });
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: ARGS,
    viewport: { width: 1280, height: 900 },
    locale: LOCALE,
    timezoneId: TIME_ZONE,
    colorScheme: 'light',
  });
  return {
    context,
    async close() {
      await context.close();
      rmSync(profile, { recursive: true, force: true });
    },
  };
}

/** One browser tab of the UI. */
export class Tab {
  constructor(page, base, screenshots) {
    this.page = page;
    this.base = base;
    this.screenshots = screenshots;
    this.requests = [];
    this.problems = [];
    page.on('request', (r) => this.requests.push(r.url()));
    page.on('pageerror', (e) => this.problems.push(`page error: ${e.message}`));
    page.on('console', (m) => {
      // Answers the UI handles itself (a bad query, a rejected token, a missing cluster) are logged by Chromium as errors.
      if (m.type() === 'error' && !/Failed to load resource: the server responded with a status of (400|401|403|404)/.test(m.text())) {
        this.problems.push(`console: ${m.text()}`);
      }
    });
  }

  static async open(browser, base, screenshots) {
    return new Tab(await browser.context.newPage(), base, screenshots);
  }

  view() { return this.page.locator('#view'); }

  async waitLoaded(timeout = 15_000) {
    await this.page.waitForSelector('#view[data-loaded="true"]', { timeout });
    return Number(await this.page.getAttribute('#view', 'data-load-ms'));
  }

  /** Waits for the page of `route` (a route pattern such as `/policies`) to have its data. */
  async waitRoute(route, timeout = 15_000) {
    await this.page.waitForSelector(`#view[data-loaded="true"][data-route="${route}"]`, { timeout });
    return Number(await this.page.getAttribute('#view', 'data-load-ms'));
  }

  /** A full page load of `path`; resolves to ms from the request to the data on screen. */
  async load(path) {
    await this.page.bringToFront();
    const started = Date.now();
    await this.page.goto(this.base + path);
    await this.waitLoaded();
    return Date.now() - started;
  }

  /** A client-side navigation, as a click on a link does; resolves to the page's load time. */
  async visit(path) {
    // A background tab's timers and frames are throttled: the tab under test is in front.
    await this.page.bringToFront();
    await this.page.evaluate((p) => {
      history.pushState(null, '', p);
      dispatchEvent(new PopStateEvent('popstate'));
    }, path);
    return this.waitLoaded();
  }

  /** Clicks a main-navigation link; resolves to the page's load time. */
  async nav(label) {
    await this.page.bringToFront();
    await this.page.locator('#nav').getByRole('link', { name: label, exact: true }).click();
    return this.waitLoaded();
  }

  async signIn(token) {
    await this.load('/');
    await this.page.fill('#token', token);
    await this.page.click('#view button[type="submit"]');
    await this.page.waitForSelector('#view[data-loaded="true"]:not([data-route="signin"])');
  }

  async shot(name) {
    await this.page.screenshot({ path: join(this.screenshots, `${name}.png`), fullPage: true });
  }

  async text(selector) {
    return (await this.page.locator(selector).first().innerText()).trim();
  }

  async close() { await this.page.close(); }
}
