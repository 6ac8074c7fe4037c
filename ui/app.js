// The admin UI's entry point: the route table, the sign-in gate, the header (who is signed in,
// sign-out, navigation state, the narrow-screen menu) and the light/dark theme toggle.

import { session } from './lib/api.js';
import { start, reload } from './lib/router.js';
import { timeZone } from './lib/format.js';
import signin from './pages/signin.js';
import overview from './pages/overview.js';
import events from './pages/events.js';
import clusters from './pages/clusters.js';
import cluster from './pages/cluster.js';
import geo from './pages/geo.js';
import metrics from './pages/metrics.js';
import clientMetrics from './pages/client-metrics.js';
import analytics from './pages/analytics.js';
import dashboard from './pages/dashboard.js';
import policies from './pages/policies.js';
import policyBuilder from './pages/policy-builder.js';
import privacy from './pages/privacy.js';
import trace from './pages/trace.js';

const routes = [
  { path: '/', page: overview },
  { path: '/events', page: events },
  { path: '/clusters', page: clusters },
  { path: '/clusters/:id', page: cluster },
  { path: '/traces/:id', page: trace },
  { path: '/analytics', page: analytics },
  { path: '/dashboard', page: dashboard },
  { path: '/dashboard/:product', page: dashboard },
  { path: '/geo', page: geo },
  { path: '/geo/:country', page: geo },
  { path: '/stats', page: metrics },
  { path: '/client-metrics', page: clientMetrics },
  { path: '/policies', page: policies },
  { path: '/policies/new', page: policyBuilder },
  { path: '/policies/:id', page: policyBuilder },
  { path: '/privacy', page: privacy },
];

const THEME_KEY = 'telemetryd.theme';
const root = document.documentElement;
const nav = document.getElementById('nav');
const navToggle = document.getElementById('nav-toggle');
const who = document.getElementById('who');
const signOut = document.getElementById('sign-out');
const themeToggle = document.getElementById('theme-toggle');

function effectiveTheme() {
  return root.dataset.theme || (matchMedia('(prefers-color-scheme: dark)').matches ? 'dark' : 'light');
}

function applyTheme(theme) {
  if (theme) root.dataset.theme = theme;
  else delete root.dataset.theme;
  const next = effectiveTheme() === 'dark' ? 'light' : 'dark';
  themeToggle.textContent = next === 'dark' ? 'Dark' : 'Light';
  themeToggle.setAttribute('aria-label', `Switch to the ${next} theme`);
}

themeToggle.addEventListener('click', () => {
  const next = effectiveTheme() === 'dark' ? 'light' : 'dark';
  localStorage.setItem(THEME_KEY, next);
  applyTheme(next);
});
applyTheme(localStorage.getItem(THEME_KEY));

function showSession() {
  const user = session.user;
  const signedIn = Boolean(session.token && user);
  nav.hidden = !signedIn;
  navToggle.hidden = !signedIn;
  who.hidden = !signedIn;
  signOut.hidden = !signedIn;
  document.body.dataset.role = signedIn ? user.role : 'none';
  // A token scoped to some products has no process-wide figures: the Metrics page is not for it.
  document.body.dataset.scope = signedIn && user.allProducts === false ? 'products' : 'all';
  if (signedIn) {
    who.replaceChildren(`Signed in as ${user.name}`);
    const role = document.createElement('span');
    role.className = 'role';
    role.textContent = user.role;
    who.append(role);
  }
}

function markCurrent(path) {
  for (const link of nav.querySelectorAll('a')) {
    const href = link.getAttribute('href');
    const current = href === '/' ? path === '/' : path === href || path.startsWith(`${href}/`);
    if (current) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
  nav.classList.add('collapsed');
  navToggle.setAttribute('aria-expanded', 'false');
}

navToggle.addEventListener('click', () => {
  const open = nav.classList.toggle('collapsed') === false;
  navToggle.setAttribute('aria-expanded', String(open));
});

signOut.addEventListener('click', () => session.end('You signed out.'));

session.onChange((reason) => {
  signin.reason = reason;
  showSession();
  reload();
});

document.getElementById('tz').textContent = `Times in ${timeZone}`;
showSession();
start({
  table: routes,
  element: document.getElementById('view'),
  gate: () => (session.token && session.user ? null : signin),
  rendered: markCurrent,
});
