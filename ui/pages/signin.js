// Sign-in: the operator pastes an admin or viewer token; `GET /api/v1/whoami` checks it and
// says who it is. Shows why the previous session ended (signed out, token rejected).

import { h } from '../lib/dom.js';
import { api, session, ApiError } from '../lib/api.js';

const page = {
  id: 'signin',
  title: 'Sign in',
  /** Why the last session ended, set by app.js. */
  reason: null,
  render(ctx) {
    const message = h('p', { class: 'field-error', role: 'alert', id: 'signin-message' });
    const input = h('input', { type: 'password', name: 'token', id: 'token', required: true, autocomplete: 'current-password', spellcheck: 'false', 'aria-describedby': 'signin-help' });
    const button = h('button', { type: 'submit' }, 'Sign in');
    const form = h('form', {
      onsubmit: async (event) => {
        event.preventDefault();
        const token = input.value.trim();
        if (!token) { message.textContent = 'Enter a token.'; return; }
        button.disabled = true;
        message.textContent = '';
        try {
          const user = await api('/api/v1/whoami', { token });
          page.reason = null;
          session.start(token, { name: user.name, role: user.role, allProducts: user.all_products });
        } catch (error) {
          button.disabled = false;
          message.textContent = error instanceof ApiError && error.status === 401
            ? `This token was not accepted (${error.code}). Check it and try again.`
            : `Could not sign in: ${error.message}`;
          input.select();
        }
      },
    },
    h('label', { for: 'token' }, 'Admin token'),
    input,
    h('p', { class: 'muted small', id: 'signin-help' },
      'A token from [[admin.tokens]] in the config, or the generated one in data/admin-token. ',
      'It is kept for this browser tab only and sent as a bearer token.'),
    button, message);
    const notice = page.reason ? h('div', { class: 'notice', role: 'status', id: 'signin-reason' }, page.reason) : null;
    ctx.view.append(h('div', { class: 'signin panel' }, h('h1', {}, 'Sign in to telemetryd'), notice, form));
    input.focus();
    ctx.loaded();
  },
};

export default page;
