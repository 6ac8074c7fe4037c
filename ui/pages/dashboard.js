// Dashboard (`/dashboard/:product`): the saved analytics queries pinned to one product, each run
// through POST /api/v1/analytics/query and shown as its chart and table, with a link that opens
// it on the Analytics page. `/dashboard` picks the product (at once when the token sees one).

import { h, replace } from '../lib/dom.js';
import { api, query } from '../lib/api.js';
import { navigate } from '../lib/router.js';
import { load, panel, pageHead, productSelect, products, emptyState } from '../lib/ui.js';
import { runSaved, answerView, notesOf } from './analytics.js';

/** One pinned query: its name (a link to it), the answer's notes, chart and table. */
function tile(saved, signal) {
  const body = h('div', {});
  const done = load(body, () => runSaved(saved, signal), (answer) => {
    const notes = notesOf(answer);
    return [notes ? h('p', { class: 'muted small' }, notes) : null, ...answerView(answer, `dashboard-table-${saved.id}`)];
  });
  const element = h('section', { class: 'panel dashboard-tile', 'data-saved-id': saved.id },
    h('h2', {}, h('a', { href: `/analytics?saved=${encodeURIComponent(saved.id)}` }, saved.name)), body);
  return { element, done };
}

export default {
  title: 'Dashboard',
  render(ctx) {
    const product = ctx.params.product || '';
    const picker = productSelect(product, (p) => navigate(p ? `/dashboard/${encodeURIComponent(p)}` : '/dashboard'), { allLabel: 'Choose a product' });
    const tiles = h('div', { id: 'dashboard-tiles' });
    ctx.view.append(
      pageHead(product ? `Dashboard of ${product}` : 'Dashboard', 'The analytics queries pinned to the product, weighted by sampling.'),
      panel(null, h('div', { class: 'filters' }, picker)),
      tiles);

    if (!product) {
      products().then((list) => {
        if (list.length === 1) navigate(`/dashboard/${encodeURIComponent(list[0])}`, { replace: true });
        else {
          replace(tiles, emptyState('Choose a product to see its dashboard.'));
          ctx.loaded();
        }
      });
      return;
    }
    load(tiles, () => api(`/api/v1/analytics/saved${query({ product, pinned: true })}`, { signal: ctx.signal }), (r) => {
      const shown = r.saved.map((saved) => tile(saved, ctx.signal));
      Promise.all(shown.map((t) => t.done)).then(() => ctx.loaded());
      return shown.map((t) => t.element);
    }, {
      isEmpty: (r) => r.saved.length === 0,
      empty: 'Nothing is pinned to this dashboard yet: save a query on the Analytics page and pin it.',
    }).then((r) => { if (!r || r.saved.length === 0) ctx.loaded(); });
  },
};
