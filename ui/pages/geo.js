// Geo: where events come from — countries as a bar chart and a table (events, installs), and a
// country's regions on `/geo/{country}`. Links lead to the country's events.

import { h } from '../lib/dom.js';
import { api, query } from '../lib/api.js';
import { fmtNumber, countryName } from '../lib/format.js';
import { hbars } from '../lib/chart.js';
import { load, panel, pageHead, productSelect, rangePresets, table } from '../lib/ui.js';

const RANGES = [['-24h', '24 h'], ['-7d', '7 d'], ['-30d', '30 d'], ['all', 'All']];

export default {
  title: 'Geo',
  render(ctx) {
    const country = ctx.params.country?.toUpperCase() || null;
    const state = { product: ctx.query.get('product') || '', range: ctx.query.get('range') || '-7d' };
    const content = h('div', { id: 'geo-content' });

    const pageQuery = () => query({ product: state.product, range: state.range === '-7d' ? '' : state.range });
    const refresh = async () => {
      ctx.setQuery({ product: state.product, range: state.range === '-7d' ? '' : state.range });
      const from = state.range === 'all' ? '' : state.range;
      await load(content,
        () => api(`/api/v1/geo${query({ product: state.product, from })}`, { signal: ctx.signal }),
        (r) => (country ? regions(r.countries.find((c) => c.country_code === country), from) : countries(r.countries, from)),
        {
          isEmpty: (r) => r.countries.length === 0 || (country && !r.countries.some((c) => c.country_code === country)),
          empty: country ? `No events from ${countryName(country)} in this range.` : 'No events with a location in this range. Geo needs a [geo] database in the config.',
        });
      ctx.loaded();
    };

    function countries(list, from) {
      const sorted = [...list].sort((a, b) => b.events - a.events);
      return [
        panel('Events by country', hbars(sorted.slice(0, 15).map((c) => ({
          label: countryName(c.country_code), value: c.events, href: `/geo/${c.country_code}${pageQuery()}`,
          title: `${countryName(c.country_code)}: ${fmtNumber(c.events)} events, ${fmtNumber(c.installs)} installs`,
        })), { title: 'Events by country', width: 900 })),
        panel(`${sorted.length} ${sorted.length === 1 ? 'country' : 'countries'}`, table(
          [{ label: 'Country' }, { label: 'Code' }, { label: 'Events', num: true }, { label: 'Installs', num: true }, { label: 'Regions', num: true }, { label: '' }],
          sorted.map((c) => [
            h('a', { href: `/geo/${c.country_code}${pageQuery()}` }, countryName(c.country_code)),
            h('code', {}, c.country_code), fmtNumber(c.events), fmtNumber(c.installs), fmtNumber(c.regions?.length || 0),
            h('a', { href: `/events${query({ country_code: c.country_code, from: from || 'all' })}`, class: 'small' }, 'Events'),
          ]),
          { rowAttrs: (i) => ({ class: 'country-row', 'data-country': sorted[i].country_code }) })),
      ];
    }

    function regions(c, from) {
      const sorted = [...(c.regions || [])].sort((a, b) => b.events - a.events);
      return [
        h('div', { class: 'cards' },
          h('div', { class: 'card' }, h('div', { class: 'label' }, 'Events'), h('div', { class: 'value' }, fmtNumber(c.events))),
          h('div', { class: 'card' }, h('div', { class: 'label' }, 'Installs'), h('div', { class: 'value' }, fmtNumber(c.installs)))),
        sorted.length ? panel('Events by region', hbars(sorted.slice(0, 20).map((r) => ({ label: r.region_code, value: r.events })), { title: 'Events by region', cls: 's-1', width: 900 })) : null,
        panel('Regions', sorted.length ? table([{ label: 'Region' }, { label: 'Events', num: true }, { label: 'Installs', num: true }, { label: '' }],
          sorted.map((r) => [h('code', {}, r.region_code), fmtNumber(r.events), fmtNumber(r.installs),
            h('a', { href: `/events${query({ region_code: r.region_code, from: from || 'all' })}`, class: 'small' }, 'Events')]),
          { rowAttrs: (i) => ({ class: 'region-row', 'data-region': sorted[i].region_code }) })
          : h('p', { class: 'muted' }, 'The geo database has no regions for this country.')),
      ];
    }

    ctx.view.append(
      country ? h('p', {}, h('a', { href: `/geo${pageQuery()}` }, '← All countries')) : null,
      pageHead(country ? `${countryName(country)} (${country})` : 'Geo',
        country ? 'Events and installs by region.' : 'Events and installs by country, from the offline geo database (IPs are never stored).',
        country ? h('a', { class: 'button ghost', href: `/events${query({ country_code: country, from: state.range })}` }, 'Events from here') : null,
        productSelect(state.product, (v) => { state.product = v; refresh(); }),
        rangePresets(state.range, (v) => { state.range = v; refresh(); }, RANGES)),
      content);
    refresh();
  },
};
