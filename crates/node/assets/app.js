// The Jingteng node dashboard: one page application over the node's /api/.
//
// Structure (docs/dashboard.md):
//   I18N   every label, in English and Chinese, one object per language;
//   PAGES  one entry per page: its route (#/id), and an async render function that
//          fetches its data from /api/… and fills the main element;
//   chart  every chart goes through it (ECharts), so pages resize and dispose alike.
// A page for a new capability is one entry in PAGES, one render function, and its
// strings in I18N.
(() => {
  'use strict';

  // ---------------------------------------------------------------------------
  // Strings

  const I18N = {
    en: {
      'lang.switch': '中文',
      'title': 'Jingteng dashboard',
      'nav.overview': 'Overview',
      'nav.match': 'Match',
      'nav.jobs': 'Jobs',
      'nav.audit': 'Audit log',
      'nav.datasets': 'Datasets',
      'role.operator': 'operator',
      'role.analyst': 'analyst (read-only)',
      'loading': 'Loading…',
      'error.load': 'Could not load this page',
      'error.unauthorised': 'The token is missing or no longer valid: open the URL with ?token=… again.',
      'none': '—',
      'yes': 'yes',
      'no': 'no',
      'node.title': 'This node',
      'node.party': 'Party',
      'node.role': 'Your access',
      'node.version': 'Version',
      'node.endpoint': 'Node-to-node API (mutual TLS)',
      'node.dashboard': 'Dashboard',
      'node.cert': 'TLS certificate (SHA-256)',
      'node.key': 'Signing key (Ed25519, public)',
      'collab.title': 'Collaboration {id}',
      'collab.none': 'This node is in no collaboration yet. A host proposes one (jingteng collab propose) and every member signs it.',
      'collab.description': 'Description',
      'collab.host': 'Host (joins and computes)',
      'collab.proposer': 'Proposed by',
      'collab.contract': 'Contract (SHA-256)',
      'collab.signatures': 'Signatures',
      'collab.signed_of': '{n} of {m} members signed',
      'collab.unreadable': 'The stored contract cannot be used',
      'state.active': 'active',
      'state.pending': 'awaiting signatures',
      'state.recorded': 'recorded',
      'members.title': 'Members',
      'members.party': 'Party',
      'members.description': 'Description',
      'members.tables': 'Tables in the spec',
      'members.endpoint': 'Endpoint',
      'members.cert': 'Certificate',
      'members.signature': 'Signature',
      'members.signed': 'signed',
      'members.pending': 'pending',
      'tag.host': 'host',
      'tag.proposer': 'proposer',
      'tag.you': 'this node',
      'match.none': 'This node hosts no match runs. Runs and their reports are kept by the collaboration\'s host{host}.',
      'match.none_host': ' ({host}: open its dashboard)',
      'match.run': 'Match run',
      'match.collaboration': 'Collaboration',
      'match.state': 'State',
      'match.started': 'Started',
      'match.seconds': 'Run time',
      'match.records': 'Records matched from',
      'match.no_report': 'No report for this run',
      'match.rate_title': 'Match rate by identifier type',
      'match.rate_sub': 'People matched, as a share of the smallest party\'s records in each set',
      'match.all_types': 'any identifier',
      'match.overlap_title': 'Overlap by set of parties',
      'match.overlap_sub': 'People with a linked record at every party of the set',
      'match.quality_title': 'Identifier quality per party',
      'match.quality_sub': 'Cells of each identifier column',
      'match.table_title': 'Matched per set of parties',
      'match.set': 'Parties',
      'match.matched': 'Matched',
      'match.base': 'Base (smallest party)',
      'match.rate': 'Match rate',
      'match.via': 'via {t} alone',
      'match.people': 'people',
      'id.phone': 'phone',
      'id.email': 'email',
      'id.device': 'device',
      'id.opaque': 'opaque id',
      'quality.valid': 'valid',
      'quality.ambiguous': 'ambiguous (links no one)',
      'quality.invalid': 'invalid',
      'quality.missing': 'missing',
      'jobs.title': 'Jobs',
      'jobs.none': 'No jobs yet. A match run this node hosts is a job.',
      'jobs.id': '#',
      'jobs.kind': 'Kind',
      'jobs.collaboration': 'Collaboration',
      'jobs.state': 'State',
      'jobs.attempts': 'Attempts',
      'jobs.progress': 'Progress',
      'jobs.error': 'Error',
      'jobs.created': 'Created',
      'jobs.updated': 'Updated',
      'jobs.received': 'received from {who}',
      'jobs.report': 'report',
      'jobs.chart_title': 'Jobs by state',
      'jobstate.done': 'done',
      'jobstate.running': 'running',
      'jobstate.retrying': 'retrying',
      'jobstate.failed': 'failed',
      'jobstate.queued': 'queued',
      'audit.title': 'Audit log',
      'audit.ok': 'Hash chain verified: {n} entries, none changed, none missing.',
      'audit.broken': 'The hash chain does not verify: {error}',
      'audit.verify': 'Verify now',
      'audit.verify_done': 'Verified and recorded in the log.',
      'audit.operator_only': 'Actions need the operator token; this session is read-only.',
      'audit.chart_title': 'Entries by action',
      'audit.showing': 'The newest {n} of {total} entries.',
      'audit.seq': '#',
      'audit.time': 'Time',
      'audit.actor': 'Actor',
      'audit.action': 'Action',
      'audit.subject': 'Subject',
      'audit.details': 'Details',
      'audit.hash': 'Hash',
      'datasets.title': 'Datasets',
      'datasets.none': 'No datasets imported yet (jingteng import).',
      'datasets.chart_title': 'Rows per dataset (latest version)',
      'datasets.name': 'Dataset',
      'datasets.version': 'Version',
      'datasets.rows': 'Rows',
      'datasets.columns': 'Columns',
      'datasets.sha': 'SHA-256',
      'datasets.source': 'Imported from',
      'datasets.versions': 'Versions',
      'datasets.version_line': 'v{v}: {rows} rows, {time}',
      'chart.rows': 'rows',
      'chart.entries': 'entries',
      'chart.jobs': 'jobs',
    },
    zh: {
      'lang.switch': 'English',
      'title': '京腾控制台',
      'nav.overview': '概览',
      'nav.match': '匹配',
      'nav.jobs': '任务',
      'nav.audit': '审计日志',
      'nav.datasets': '数据集',
      'role.operator': '管理员',
      'role.analyst': '分析师（只读）',
      'loading': '加载中…',
      'error.load': '无法加载此页面',
      'error.unauthorised': '令牌缺失或已失效：请重新打开带有 ?token=… 的网址。',
      'none': '—',
      'yes': '是',
      'no': '否',
      'node.title': '本节点',
      'node.party': '参与方',
      'node.role': '访问权限',
      'node.version': '版本',
      'node.endpoint': '节点间接口（双向 TLS）',
      'node.dashboard': '控制台',
      'node.cert': 'TLS 证书（SHA-256）',
      'node.key': '签名公钥（Ed25519）',
      'collab.title': '数据协作 {id}',
      'collab.none': '本节点尚未加入任何数据协作。由主持方发起（jingteng collab propose），各成员签署。',
      'collab.description': '说明',
      'collab.host': '主持方（连接与计算）',
      'collab.proposer': '发起方',
      'collab.contract': '合约（SHA-256）',
      'collab.signatures': '签名',
      'collab.signed_of': '{m} 个成员中已有 {n} 个签署',
      'collab.unreadable': '存储的合约无法使用',
      'state.active': '已生效',
      'state.pending': '等待签署',
      'state.recorded': '已记录',
      'members.title': '成员',
      'members.party': '参与方',
      'members.description': '说明',
      'members.tables': '协作规范中的数据表',
      'members.endpoint': '地址',
      'members.cert': '证书',
      'members.signature': '签名',
      'members.signed': '已签署',
      'members.pending': '待签署',
      'tag.host': '主持方',
      'tag.proposer': '发起方',
      'tag.you': '本节点',
      'match.none': '本节点没有主持匹配任务。匹配任务及其报告保存在协作的主持方{host}。',
      'match.none_host': '（{host}：请打开其控制台）',
      'match.run': '匹配任务',
      'match.collaboration': '数据协作',
      'match.state': '状态',
      'match.started': '开始时间',
      'match.seconds': '运行时长',
      'match.records': '参与匹配的记录数',
      'match.no_report': '此任务没有报告',
      'match.rate_title': '按标识类型的匹配率',
      'match.rate_sub': '匹配人数占每组中最小参与方记录数的比例',
      'match.all_types': '任一标识',
      'match.overlap_title': '按参与方组合的重合人数',
      'match.overlap_sub': '在组合内每个参与方都有关联记录的人数',
      'match.quality_title': '各参与方的标识质量',
      'match.quality_sub': '每个标识列的单元格',
      'match.table_title': '各参与方组合的匹配结果',
      'match.set': '参与方组合',
      'match.matched': '匹配人数',
      'match.base': '基数（最小参与方）',
      'match.rate': '匹配率',
      'match.via': '仅凭{t}',
      'match.people': '人',
      'id.phone': '手机号',
      'id.email': '邮箱',
      'id.device': '设备号',
      'id.opaque': '其他标识',
      'quality.valid': '有效',
      'quality.ambiguous': '重复（无法关联）',
      'quality.invalid': '无效',
      'quality.missing': '缺失',
      'jobs.title': '任务',
      'jobs.none': '暂无任务。本节点主持的匹配会记录为任务。',
      'jobs.id': '#',
      'jobs.kind': '类型',
      'jobs.collaboration': '数据协作',
      'jobs.state': '状态',
      'jobs.attempts': '尝试次数',
      'jobs.progress': '进度',
      'jobs.error': '错误',
      'jobs.created': '创建时间',
      'jobs.updated': '更新时间',
      'jobs.received': '已收到：{who}',
      'jobs.report': '报告',
      'jobs.chart_title': '按状态统计的任务',
      'jobstate.done': '已完成',
      'jobstate.running': '运行中',
      'jobstate.retrying': '重试中',
      'jobstate.failed': '失败',
      'jobstate.queued': '排队中',
      'audit.title': '审计日志',
      'audit.ok': '哈希链校验通过：共 {n} 条，无篡改、无缺失。',
      'audit.broken': '哈希链校验失败：{error}',
      'audit.verify': '立即校验',
      'audit.verify_done': '已校验，并记入审计日志。',
      'audit.operator_only': '操作需要管理员令牌；当前会话为只读。',
      'audit.chart_title': '按动作统计的条目',
      'audit.showing': '显示最新 {n} 条，共 {total} 条。',
      'audit.seq': '#',
      'audit.time': '时间',
      'audit.actor': '执行者',
      'audit.action': '动作',
      'audit.subject': '对象',
      'audit.details': '详情',
      'audit.hash': '哈希',
      'datasets.title': '数据集',
      'datasets.none': '尚未导入数据集（jingteng import）。',
      'datasets.chart_title': '各数据集行数（最新版本）',
      'datasets.name': '数据集',
      'datasets.version': '版本',
      'datasets.rows': '行数',
      'datasets.columns': '列',
      'datasets.sha': 'SHA-256',
      'datasets.source': '导入来源',
      'datasets.versions': '历史版本',
      'datasets.version_line': 'v{v}：{rows} 行，{time}',
      'chart.rows': '行',
      'chart.entries': '条',
      'chart.jobs': '个',
    },
  };

  const LANG_KEY = 'jingteng-dashboard-lang';
  let lang = localStorage.getItem(LANG_KEY)
    || ((navigator.language || '').toLowerCase().startsWith('zh') ? 'zh' : 'en');
  if (!I18N[lang]) lang = 'en';

  function t(key, vars) {
    let s = I18N[lang][key];
    if (s === undefined) s = I18N.en[key];
    if (s === undefined) return key;
    if (vars) {
      s = s.replace(/\{(\w+)\}/g, (m, k) => (vars[k] === undefined ? m : String(vars[k])));
    }
    return s;
  }
  const locale = () => (lang === 'zh' ? 'zh-CN' : 'en');
  const num = (n) => (n === null || n === undefined ? t('none') : Number(n).toLocaleString(locale()));
  const pct = (r) => (r === null || r === undefined ? t('none') : (100 * r).toFixed(1) + '%');
  const when = (ms) => (ms ? new Date(ms).toLocaleString(locale()) : t('none'));
  const whenCell = (ms) => h('span', { class: 'nowrap' }, when(ms));
  const short = (hex, n = 12) => (hex ? String(hex).slice(0, n) + '…' : t('none'));
  const idType = (ty) => (I18N.en['id.' + ty] ? t('id.' + ty) : ty);
  const setName = (key) => String(key).split('+').join(' ∩ ');

  // ---------------------------------------------------------------------------
  // Access: the token comes once in the address (?token=…); it is kept for this tab
  // only and removed from the address bar. The API gets it as a Bearer header.

  const TOKEN_KEY = 'jingteng-dashboard-token';
  (function takeToken() {
    const u = new URL(location.href);
    const tok = u.searchParams.get('token');
    if (tok) {
      sessionStorage.setItem(TOKEN_KEY, tok);
      u.searchParams.delete('token');
      history.replaceState(null, '', u.pathname + u.search + u.hash);
    }
  })();

  class ApiError extends Error {
    constructor(status, detail) {
      super(detail);
      this.status = status;
    }
  }

  async function api(path, method = 'GET') {
    const headers = { Accept: 'application/json' };
    const tok = sessionStorage.getItem(TOKEN_KEY);
    if (tok) headers.Authorization = 'Bearer ' + tok;
    const r = await fetch(path, { method, headers, credentials: 'same-origin', cache: 'no-store' });
    let body = null;
    try {
      body = await r.json();
    } catch (e) {
      body = null;
    }
    if (!r.ok) {
      throw new ApiError(r.status, (body && body.detail) || r.statusText);
    }
    return body;
  }

  // ---------------------------------------------------------------------------
  // DOM helpers: text goes in as text, never as HTML.

  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === 'class') el.className = v;
      else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
      else el.setAttribute(k, v === true ? '' : v);
    }
    for (const c of children.flat(Infinity)) {
      if (c === null || c === undefined || c === false) continue;
      el.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return el;
  }

  function card(title, sub, ...body) {
    return h('section', { class: 'card' },
      title ? h('h2', {}, title) : null,
      sub ? h('p', { class: 'sub' }, sub) : null,
      ...body);
  }

  function table(headers, rows, cls) {
    return h('div', { class: 'table-wrap' },
      h('table', { class: cls || '' },
        h('thead', {}, h('tr', {}, headers.map((x) => h('th', {}, x)))),
        h('tbody', {}, rows.map((r) => h('tr', {}, r.map((c) => h('td', {}, c)))))));
  }

  function dl(pairs) {
    return h('dl', { class: 'kv' }, pairs.map(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]));
  }

  const badge = (text, kind) => h('span', { class: 'badge ' + (kind || '') }, text);
  const code = (text, title) => h('code', { title: title || null }, text);
  const empty = (text) => h('p', { class: 'empty' }, text);

  function jobState(state) {
    const kind = { done: 'ok', failed: 'bad', retrying: 'warn', running: 'info', queued: 'info' }[state];
    return badge(I18N.en['jobstate.' + state] ? t('jobstate.' + state) : state, kind);
  }

  // ---------------------------------------------------------------------------
  // Charts

  const PALETTE = ['#d7261e', '#0052d9', '#f59e0b', '#10b981', '#8b5cf6', '#64748b', '#ec4899'];
  let charts = [];

  function chart(option, height) {
    const el = h('div', { class: 'chart', style: 'height:' + (height || 320) + 'px' });
    const make = () => {
      const c = echarts.init(el, null, { renderer: 'canvas', locale: lang === 'zh' ? 'ZH' : 'EN' });
      c.setOption(Object.assign({
        color: PALETTE,
        textStyle: { fontFamily: 'inherit' },
        animationDuration: 300,
      }, option));
      charts.push(c);
    };
    // Initialised once the element is in the page (ECharts needs its size).
    pendingCharts.push(make);
    return el;
  }
  let pendingCharts = [];

  function disposeCharts() {
    for (const c of charts) c.dispose();
    charts = [];
    pendingCharts = [];
  }
  window.addEventListener('resize', () => charts.forEach((c) => c.resize()));

  // ---------------------------------------------------------------------------
  // Pages. Later capabilities add their page here, one entry each, e.g.
  //   { id: 'insight', render: renderInsight }      overlap, profiles, 4A funnel
  //   { id: 'audiences', render: renderAudiences }  sizes, versions, create
  //   { id: 'campaigns', render: renderCampaigns }  attribution, lift, reach
  //   { id: 'budget', render: renderBudget }        remaining privacy budget
  // with 'nav.<id>' and the page's strings in I18N.

  const PAGES = [
    { id: 'overview', render: renderOverview },
    { id: 'match', render: renderMatch },
    { id: 'jobs', render: renderJobs },
    { id: 'audit', render: renderAudit },
    { id: 'datasets', render: renderDatasets },
    { id: 'audiences', render: renderAudiences },
  ];

  let session = null;

  async function renderOverview(main) {
    const node = await api('/api/node');
    const out = [];
    out.push(card(t('node.title'), null, dl([
      [t('node.party'), h('strong', {}, node.party)],
      [t('node.role'), t('role.' + session.role)],
      [t('node.endpoint'), code(node.endpoint)],
      [t('node.dashboard'), node.dashboard ? code(node.dashboard) : t('none')],
      [t('node.cert'), code(short(node.cert_sha256, 16), node.cert_sha256)],
      [t('node.key'), code(short(node.public_key, 16), node.public_key)],
      [t('node.version'), node.version],
    ])));
    if (!node.collaborations.length) out.push(card(null, null, empty(t('collab.none'))));
    for (const c of node.collaborations) {
      if (c.error) {
        out.push(card(t('collab.title', { id: c.id }), null,
          h('p', { class: 'alert bad' }, t('collab.unreadable') + ': ' + c.error)));
        continue;
      }
      const state = c.active ? badge(t('state.active'), 'ok') : badge(t('state.pending'), 'warn');
      const members = c.members.map((m) => [
        h('span', {}, h('strong', {}, m.party), ' ',
          m.host ? badge(t('tag.host'), 'info') : null, ' ',
          m.proposer ? badge(t('tag.proposer')) : null, ' ',
          m.party === node.party ? badge(t('tag.you'), 'you') : null),
        m.description || t('none'),
        (m.tables || []).join(', ') || t('none'),
        code(m.endpoint),
        code(short(m.cert_sha256), m.cert_sha256),
        m.signed
          ? h('span', {}, badge('✓ ' + t('members.signed'), 'ok'), ' ', code(short(m.signature, 10), m.signature))
          : badge(t('members.pending'), 'warn'),
      ]);
      out.push(card(null, null,
        h('div', { class: 'card-head' }, h('h2', {}, t('collab.title', { id: c.id })), state),
        dl([
          [t('collab.description'), c.description || t('none')],
          [t('collab.host'), c.host || t('none')],
          [t('collab.proposer'), c.proposer],
          [t('collab.contract'), code(short(c.contract_sha256, 16), c.contract_sha256)],
          [t('collab.signatures'), t('collab.signed_of', { n: c.signed.length, m: c.members.length })],
        ]),
        h('h3', {}, t('members.title')),
        table([t('members.party'), t('members.description'), t('members.tables'), t('members.endpoint'),
          t('members.cert'), t('members.signature')], members)));
    }
    main.append(...out);
  }

  async function renderMatch(main, arg) {
    const [list, node] = await Promise.all([api('/api/match'), api('/api/node')]);
    if (!list.runs.length) {
      const hosts = node.collaborations.map((c) => c.host).filter((x) => x && x !== node.party);
      const host = hosts.length ? t('match.none_host', { host: hosts.join(', ') }) : '';
      main.append(card(t('nav.match'), null, empty(t('match.none', { host }))));
      return;
    }
    let run = list.runs.find((r) => r.run === arg)
      || list.runs.find((r) => r.report) || list.runs[0];
    if (!run.report && run.state === 'done' && !run.report_error) {
      run = await api('/api/match/' + encodeURIComponent(run.run));
    }
    const picker = h('select', {
      id: 'run-picker',
      onchange: (e) => { location.hash = '#/match/' + e.target.value; },
    }, list.runs.map((r) => h('option', { value: r.run, selected: r.run === run.run },
      r.run + ' · ' + (r.collaboration || '') + ' · ' + when(r.created_ms))));
    const report = run.report;
    main.append(card(null, null,
      h('div', { class: 'card-head' }, h('h2', {}, t('match.run')), picker),
      dl([
        [t('match.collaboration'), run.collaboration || t('none')],
        [t('match.state'), jobState(run.state)],
        [t('match.started'), when(run.created_ms)],
        [t('match.seconds'), report ? report.seconds.toFixed(1) + ' s' : t('none')],
        [t('match.records'), report
          ? report.parties.map((p) => p + ' ' + num(report.records[p])).join(' · ')
          : t('none')],
      ]),
      run.error ? h('p', { class: 'alert bad' }, run.error) : null,
      run.report_error ? h('p', { class: 'alert bad' }, run.report_error) : null));
    if (!report) {
      main.append(card(null, null, empty(t('match.no_report'))));
      return;
    }
    const s = run.summary;
    const cats = [t('match.all_types')].concat(s.id_types.map(idType));
    const rateSeries = s.sets.map((set) => ({
      name: setName(set.set),
      type: 'bar',
      barMaxWidth: 28,
      data: [set.rate].concat(s.id_types.map((ty) => set.by_id_type[ty].rate))
        .map((r) => (r === null ? 0 : Math.round(r * 1000) / 10)),
    }));
    const rateTip = (p) => {
      const set = s.sets[p.seriesIndex];
      const n = p.dataIndex === 0 ? set.matched : set.by_id_type[s.id_types[p.dataIndex - 1]].matched;
      return p.seriesName + '<br>' + p.name + ': <b>' + p.value + '%</b><br>'
        + num(n) + ' / ' + num(set.base_records) + ' (' + set.base_party + ')';
    };
    main.append(card(t('match.rate_title'), t('match.rate_sub'), chart({
      tooltip: { trigger: 'item', formatter: rateTip },
      legend: { top: 0 },
      grid: { left: 48, right: 16, top: 40, bottom: 32 },
      xAxis: { type: 'category', data: cats },
      yAxis: { type: 'value', max: 100, axisLabel: { formatter: '{value}%' } },
      series: rateSeries,
    }, 340)));

    const sets = s.sets.slice().reverse();
    main.append(h('div', { class: 'grid2' },
      card(t('match.overlap_title'), t('match.overlap_sub'), chart({
        tooltip: { trigger: 'axis', axisPointer: { type: 'shadow' } },
        grid: { left: 140, right: 56, top: 8, bottom: 24 },
        xAxis: { type: 'value' },
        yAxis: { type: 'category', data: sets.map((x) => setName(x.set)) },
        series: [{
          name: t('match.matched'),
          type: 'bar',
          data: sets.map((x) => ({ value: x.matched, itemStyle: { color: PALETTE[(x.parties.length - 2) % PALETTE.length] } })),
          label: { show: true, position: 'right', formatter: (p) => num(p.value) },
          barMaxWidth: 26,
        }],
      }, 260)),
      card(t('match.quality_title'), t('match.quality_sub'), qualityChart(report))));

    const head = [t('match.set'), t('match.matched'), t('match.base'), t('match.rate')]
      .concat(s.id_types.map((ty) => t('match.via', { t: idType(ty) })));
    const rows = s.sets.map((x) => [
      setName(x.set), num(x.matched), num(x.base_records) + ' (' + x.base_party + ')', pct(x.rate),
    ].concat(s.id_types.map((ty) => num(x.by_id_type[ty].matched) + ' · ' + pct(x.by_id_type[ty].rate))));
    main.append(card(t('match.table_title'), null, table(head, rows, 'num')));
  }

  function qualityChart(report) {
    const cols = [];
    for (const p of report.parties) {
      for (const [col, c] of Object.entries(report.identifiers[p] || {})) {
        cols.push({ label: p + '.' + col, c });
      }
    }
    const part = (key, f) => ({
      name: t('quality.' + key), type: 'bar', stack: 'q', barMaxWidth: 22, data: cols.map((x) => f(x.c)),
    });
    return chart({
      color: ['#10b981', '#f59e0b', '#d7261e', '#cbd5e1'],
      tooltip: { trigger: 'axis', axisPointer: { type: 'shadow' } },
      legend: { top: 0 },
      grid: { left: 140, right: 16, top: 36, bottom: 24 },
      xAxis: { type: 'value' },
      yAxis: { type: 'category', data: cols.map((x) => x.label), inverse: true },
      series: [
        part('valid', (c) => c.valid - c.ambiguous),
        part('ambiguous', (c) => c.ambiguous),
        part('invalid', (c) => c.invalid),
        part('missing', (c) => c.missing),
      ],
    }, 260);
  }

  async function renderJobs(main) {
    const { jobs } = await api('/api/jobs');
    if (!jobs.length) {
      main.append(card(t('jobs.title'), null, empty(t('jobs.none'))));
      return;
    }
    const counts = {};
    for (const j of jobs) counts[j.state] = (counts[j.state] || 0) + 1;
    const states = Object.keys(counts);
    const stateColor = { done: '#10b981', failed: '#d7261e', retrying: '#f59e0b', running: '#0052d9', queued: '#64748b' };
    const rows = jobs.map((j) => {
      const p = j.progress || {};
      const run = p.run
        ? h('span', {}, code(p.run), ' ', j.kind === 'match' && j.state === 'done'
          ? h('a', { href: '#/match/' + p.run }, t('jobs.report')) : null)
        : null;
      const received = Array.isArray(p.received) && p.received.length
        ? h('div', { class: 'muted' }, t('jobs.received', { who: p.received.join(', ') })) : null;
      const retrying = p.retrying ? h('div', { class: 'muted warn-text' }, p.retrying) : null;
      return [String(j.id), j.kind, j.collaboration || t('none'), jobState(j.state), String(j.attempts),
        h('div', {}, run, received, retrying), j.error || '', whenCell(j.created_ms), whenCell(j.updated_ms)];
    });
    main.append(
      card(t('jobs.title'), null, table([t('jobs.id'), t('jobs.kind'), t('jobs.collaboration'), t('jobs.state'),
        t('jobs.attempts'), t('jobs.progress'), t('jobs.error'), t('jobs.created'), t('jobs.updated')], rows)),
      card(t('jobs.chart_title'), null, chart({
        tooltip: { trigger: 'item' },
        series: [{
          name: t('jobs.chart_title'),
          type: 'pie',
          radius: ['45%', '70%'],
          label: { formatter: (p) => p.name + ': ' + p.value },
          data: states.map((st) => ({
            name: I18N.en['jobstate.' + st] ? t('jobstate.' + st) : st,
            value: counts[st],
            itemStyle: { color: stateColor[st] || '#64748b' },
          })),
        }],
      }, 220)));
  }

  async function renderAudit(main) {
    const a = await api('/api/audit');
    const status = a.verify.ok
      ? h('p', { class: 'alert ok', id: 'audit-status' }, '✓ ' + t('audit.ok', { n: num(a.verify.entries) }))
      : h('p', { class: 'alert bad', id: 'audit-status' }, '✗ ' + t('audit.broken', { error: a.verify.error }));
    const operator = session.role === 'operator';
    const note = h('span', { class: 'muted', id: 'audit-note' }, operator ? '' : t('audit.operator_only'));
    const button = h('button', {
      type: 'button',
      id: 'audit-verify',
      class: 'primary',
      disabled: !operator,
      title: operator ? null : t('audit.operator_only'),
      onclick: async () => {
        button.disabled = true;
        try {
          await api('/api/audit/verify', 'POST');
          await show(true, t('audit.verify_done'));
        } catch (e) {
          note.textContent = e.message;
          note.className = 'alert bad';
          button.disabled = false;
        }
      },
    }, t('audit.verify'));
    if (flash) {
      note.textContent = flash;
      note.className = 'ok-text';
    }
    const actions = Object.entries(a.by_action);
    const rows = a.entries.map((e) => [
      String(e.seq), whenCell(e.ts_ms), e.actor, badge(e.action), e.subject, details(e.details),
      code(short(e.hash, 10), e.hash),
    ]);
    main.append(
      h('div', { class: 'grid2 narrow-right' },
        card(t('audit.title'), null, status, h('div', { class: 'actions' }, button, ' ', note)),
        card(t('audit.chart_title'), null, chart({
          tooltip: { trigger: 'axis', axisPointer: { type: 'shadow' } },
          grid: { left: 96, right: 40, top: 8, bottom: 24 },
          xAxis: { type: 'value', minInterval: 1 },
          yAxis: { type: 'category', data: actions.map(([k]) => k), inverse: true },
          series: [{
            name: t('chart.entries'), type: 'bar', barMaxWidth: 20,
            data: actions.map(([, v]) => v), label: { show: true, position: 'right' },
          }],
        }, Math.max(160, 28 * actions.length + 40)))),
      card(null, t('audit.showing', { n: num(a.entries.length), total: num(a.total) }),
        table([t('audit.seq'), t('audit.time'), t('audit.actor'), t('audit.action'), t('audit.subject'),
          t('audit.details'), t('audit.hash')], rows, 'audit')));
  }

  function details(d) {
    if (d === null || typeof d !== 'object') return String(d);
    return h('div', { class: 'details' }, Object.entries(d).map(([k, v]) => {
      // Spaces after commas let long objects wrap inside the cell.
      let text = typeof v === 'object' && v !== null ? JSON.stringify(v).replace(/,/g, ', ') : String(v);
      if (/^[0-9a-f]{40,}$/.test(text)) text = short(text, 12);
      return h('div', {}, h('span', { class: 'k' }, k), ' ', text);
    }));
  }

  async function renderDatasets(main) {
    const { datasets } = await api('/api/datasets');
    if (!datasets.length) {
      main.append(card(t('datasets.title'), null, empty(t('datasets.none'))));
      return;
    }
    main.append(card(t('datasets.chart_title'), null, chart({
      tooltip: { trigger: 'axis', axisPointer: { type: 'shadow' } },
      grid: { left: 56, right: 16, top: 24, bottom: 32 },
      xAxis: { type: 'category', data: datasets.map((d) => d.name) },
      yAxis: { type: 'value' },
      series: [{
        name: t('chart.rows'), type: 'bar', barMaxWidth: 48,
        data: datasets.map((d) => d.rows), label: { show: true, position: 'top', formatter: (p) => num(p.value) },
      }],
    }, 240)));
    const rows = datasets.map((d) => [
      h('strong', {}, d.name), 'v' + d.version, num(d.rows),
      h('div', { class: 'chips' }, d.columns.map((c) => h('span', { class: 'chip' }, c.name, h('small', {}, c.type)))),
      code(short(d.sha256, 12), d.sha256),
      code(d.source),
      h('div', {}, d.versions.map((v) => h('div', { class: 'muted' },
        t('datasets.version_line', { v: v.version, rows: num(v.rows), time: when(v.ts_ms) })))),
    ]);
    main.append(card(t('datasets.title'), null, table([t('datasets.name'), t('datasets.version'),
      t('datasets.rows'), t('datasets.columns'), t('datasets.sha'), t('datasets.source'), t('datasets.versions')], rows)));
  }

  // ---------------------------------------------------------------------------
  // Audiences: the host's audiences of each collaboration (sizes as released, versions),
  // the versions delivered to this node, and (operator) a form that defines an audience
  // at the host and a button that delivers one — the same calls as `jingteng audience
  // create|deliver --collab`.

  Object.assign(I18N.en, {
    'nav.audiences': 'Audiences',
    'aud.title': 'Audiences of {id}',
    'aud.sub': 'Kept and evaluated at the host ({host}); only sizes leave it, released under the collaboration\'s privacy rules. A delivery sends the media party only its own users.',
    'aud.none': 'No audience yet in this collaboration.',
    'aud.no_collab': 'This node is in no active collaboration.',
    'aud.unreachable': 'The host could not be asked: {error}',
    'aud.name': 'Audience',
    'aud.for': 'For (media party)',
    'aud.owner': 'Defined by',
    'aud.size_class': 'Size class',
    'aud.released': 'Released size',
    'aud.release': 'Release',
    'aud.versions': 'Versions',
    'aud.latest': 'Latest delivery',
    'aud.deliver': 'Deliver',
    'aud.delivered': 'Version {v} delivered to {to}.',
    'aud.chart_title': 'Released audience sizes (people)',
    'aud.held_title': 'Delivered to this node ({party})',
    'aud.held_sub': 'This node\'s own user ids, as it received them; opted-out and deleted users left out.',
    'aud.version': 'Version',
    'aud.users': 'Users',
    'aud.when': 'Written',
    'aud.file': 'File',
    'aud.form_title': 'Create an audience',
    'aud.form_sub': 'Rules over allowed columns (party.table.column), one per line; checked by the privacy policy at the host. The size is released with differential privacy and costs privacy budget.',
    'aud.form_collab': 'Collaboration',
    'aud.form_name': 'Name (a-z 0-9 - _)',
    'aud.form_activate': 'Deliver to',
    'aud.form_include': 'Include rules (all must match)',
    'aud.form_exclude': 'Exclude rules (none may match)',
    'aud.form_min': 'Minimum size',
    'aud.form_asof': 'As of (YYYY-MM-DD, optional)',
    'aud.form_columns': 'Allowed columns',
    'aud.create': 'Create',
    'aud.created': 'Audience {name} created: {size} people ({mode}), size class {class}.',
    'aud.withheld': 'withheld',
    'aud.operator_only': 'Creating and delivering audiences needs the operator token; the analyst token is read-only.',
    'chart.people': 'people',
  });
  Object.assign(I18N.zh, {
    'nav.audiences': '人群',
    'aud.title': '{id} 的人群',
    'aud.sub': '人群在主持方（{host}）保存和计算；离开主持方的只有人数，并按协作的隐私规则发布。投放时媒体方只收到它自己的用户。',
    'aud.none': '此协作中还没有人群。',
    'aud.no_collab': '此节点尚未加入生效的协作。',
    'aud.unreachable': '无法访问主持方：{error}',
    'aud.name': '人群',
    'aud.for': '投放至（媒体方）',
    'aud.owner': '创建方',
    'aud.size_class': '规模区间',
    'aud.released': '发布人数',
    'aud.release': '发布方式',
    'aud.versions': '版本数',
    'aud.latest': '最近投放',
    'aud.deliver': '投放',
    'aud.delivered': '第 {v} 版已投放至 {to}。',
    'aud.chart_title': '已发布的人群规模（人）',
    'aud.held_title': '投放到本节点的人群（{party}）',
    'aud.held_sub': '本节点自己的用户 ID，按收到时保存；已退出或已删除的用户不在其中。',
    'aud.version': '版本',
    'aud.users': '用户数',
    'aud.when': '写入时间',
    'aud.file': '文件',
    'aud.form_title': '创建人群',
    'aud.form_sub': '规则只能使用允许的列（方.表.列），每行一条；由主持方按隐私策略检查。人数以差分隐私发布，会消耗隐私预算。',
    'aud.form_collab': '协作',
    'aud.form_name': '名称（a-z 0-9 - _）',
    'aud.form_activate': '投放至',
    'aud.form_include': '包含规则（须全部满足）',
    'aud.form_exclude': '排除规则（均不得满足）',
    'aud.form_min': '最小人数',
    'aud.form_asof': '截止日期（YYYY-MM-DD，可选）',
    'aud.form_columns': '允许使用的列',
    'aud.create': '创建',
    'aud.created': '人群 {name} 已创建：{size} 人（{mode}），规模区间 {class}。',
    'aud.withheld': '不予发布',
    'aud.operator_only': '创建和投放人群需要操作员令牌；分析师令牌只读。',
    'chart.people': '人',
  });

  async function apiSend(path, body) {
    const headers = { Accept: 'application/json', 'Content-Type': 'application/json' };
    const tok = sessionStorage.getItem(TOKEN_KEY);
    if (tok) headers.Authorization = 'Bearer ' + tok;
    const r = await fetch(path, {
      method: 'POST', headers, credentials: 'same-origin', cache: 'no-store',
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    let out = null;
    try {
      out = await r.json();
    } catch (e) {
      out = null;
    }
    if (!r.ok) throw new ApiError(r.status, (out && out.detail) || r.statusText);
    return out;
  }

  let audError = null;
  const lines = (text) => String(text || '').split('\n').map((l) => l.trim()).filter((l) => l);

  async function renderAudiences(main) {
    const data = await api('/api/audiences');
    const operator = session.role === 'operator';
    if (!data.collaborations.length) {
      main.append(card(t('nav.audiences'), null, empty(t('aud.no_collab'))));
      return;
    }
    if (flash) main.append(h('p', { class: 'alert ok', id: 'aud-flash' }, flash));
    if (audError) main.append(h('p', { class: 'alert bad', id: 'aud-error' }, audError));
    audError = null;
    for (const c of data.collaborations) {
      const sized = c.audiences.filter((a) => a.released_people !== null && a.released_people !== undefined);
      if (sized.length) {
        main.append(card(t('aud.chart_title'), c.id, chart({
          tooltip: { trigger: 'axis', axisPointer: { type: 'shadow' } },
          grid: { left: 56, right: 16, top: 24, bottom: 32 },
          xAxis: { type: 'category', data: sized.map((a) => a.name) },
          yAxis: { type: 'value' },
          series: [{
            name: t('chart.people'), type: 'bar', barMaxWidth: 48,
            data: sized.map((a) => Math.max(0, a.released_people)),
            label: { show: true, position: 'top', formatter: (p) => num(p.value) },
          }],
        }, 240)));
      }
      const rows = c.audiences.map((a) => {
        const last = a.versions.length ? a.versions[a.versions.length - 1] : null;
        const button = h('button', {
          class: 'small',
          'data-deliver': a.name,
          disabled: !operator,
          title: operator ? null : t('aud.operator_only'),
          onclick: async () => {
            button.disabled = true;
            try {
              const d = await apiSend('/api/audiences/' + encodeURIComponent(c.id) + '/'
                + encodeURIComponent(a.name) + '/deliver');
              await show(true, t('aud.delivered', { v: d.record.version, to: d.record.to }));
            } catch (e) {
              audError = e.message;
              await show();
            }
          },
        }, t('aud.deliver'));
        return [
          h('strong', { 'data-audience': a.name }, a.name), a.activate, a.owner,
          a.size_class || t('none'),
          a.released_people === null || a.released_people === undefined ? t('aud.withheld') : num(a.released_people),
          a.release_mode ? badge(a.release_mode, 'info') : t('none'),
          String(a.versions.length),
          last ? whenCell(last.created_ms) : t('none'),
          button,
        ];
      });
      main.append(card(t('aud.title', { id: c.id }), t('aud.sub', { host: c.host || t('none') }),
        c.error ? h('p', { class: 'alert bad' }, t('aud.unreachable', { error: c.error })) : null,
        rows.length
          ? table([t('aud.name'), t('aud.for'), t('aud.owner'), t('aud.size_class'), t('aud.released'),
            t('aud.release'), t('aud.versions'), t('aud.latest'), ''], rows, 'audiences')
          : empty(t('aud.none'))));
      if (c.delivered_here.length) {
        const held = c.delivered_here.flatMap((a) => a.versions.map((v) => [
          h('strong', {}, a.name), 'v' + v.version, num(v.users), whenCell(v.created_ms),
          code(v.file), code(short(v.sha256, 12), v.sha256),
        ]));
        main.append(card(t('aud.held_title', { party: data.party }), t('aud.held_sub'),
          table([t('aud.name'), t('aud.version'), t('aud.users'), t('aud.when'), t('aud.file'), 'SHA-256'], held)));
      }
    }
    main.append(audienceForm(data, operator));
  }

  function audienceForm(data, operator) {
    const field = (label, input) => h('label', { class: 'field' }, h('span', {}, label), input);
    const collabs = data.collaborations;
    const collab = h('select', { id: 'aud-collab' }, collabs.map((c) => h('option', { value: c.id }, c.id)));
    const activate = h('select', { id: 'aud-activate' });
    const columns = h('div', { class: 'chips', id: 'aud-columns' });
    const fill = () => {
      const c = collabs.find((x) => x.id === collab.value) || collabs[0];
      activate.replaceChildren(...c.parties.map((p) => h('option', { value: p.name }, p.name)));
      const media = c.parties.find((p) => p.name === 'social');
      if (media) activate.value = media.name;
      columns.replaceChildren(...c.parties.flatMap((p) => p.tables.map((tb) => h('span', { class: 'chip' },
        tb.name, h('small', {}, tb.columns.join(', '))))));
    };
    collab.addEventListener('change', fill);
    fill();
    const name = h('input', { id: 'aud-name', type: 'text', placeholder: 'hair-care-beauty', maxlength: '64' });
    const include = h('textarea', { id: 'aud-include', rows: '3', placeholder: "retail.orders.category = 'hair_care' AND ts within 180 days" });
    const exclude = h('textarea', { id: 'aud-exclude', rows: '2', placeholder: 'brand.crm' });
    const min = h('input', { id: 'aud-min', type: 'number', min: '1', value: '1000' });
    const asOf = h('input', { id: 'aud-asof', type: 'text', placeholder: '2026-06-30' });
    const note = h('p', { id: 'aud-note', class: 'muted' }, operator ? '' : t('aud.operator_only'));
    const button = h('button', {
      id: 'aud-create', class: 'primary', type: 'submit', disabled: !operator,
      title: operator ? null : t('aud.operator_only'),
    }, t('aud.create'));
    const form = h('form', {
      id: 'aud-form',
      onsubmit: async (ev) => {
        ev.preventDefault();
        if (!operator) return;
        button.disabled = true;
        note.className = 'muted';
        note.textContent = t('loading');
        const definition = {
          name: name.value.trim(),
          activate: activate.value,
          include: lines(include.value),
          exclude: lines(exclude.value),
        };
        if (min.value) definition.min_size = Number(min.value);
        if (asOf.value.trim()) definition.as_of = asOf.value.trim();
        try {
          const r = await apiSend('/api/audiences', { collaboration: collab.value, definition });
          await show(true, t('aud.created', {
            name: r.name,
            size: r.size.people === null ? t('aud.withheld') : num(r.size.people),
            mode: r.size.release.mode,
            class: r.size_class,
          }));
        } catch (e) {
          note.className = 'alert bad';
          note.textContent = e.message;
          button.disabled = false;
        }
      },
    },
    h('div', { class: 'form-grid' },
      field(t('aud.form_collab'), collab),
      field(t('aud.form_name'), name),
      field(t('aud.form_activate'), activate),
      field(t('aud.form_min'), min),
      field(t('aud.form_asof'), asOf)),
    field(t('aud.form_include'), include),
    field(t('aud.form_exclude'), exclude),
    h('div', { class: 'actions' }, button),
    note);
    for (const el of [collab, name, activate, include, exclude, min, asOf]) el.disabled = !operator;
    return card(t('aud.form_title'), t('aud.form_sub'), form,
      h('details', {}, h('summary', {}, t('aud.form_columns')), columns));
  }

  // ---------------------------------------------------------------------------
  // Shell: navigation, language, routing.

  let flash = null;

  function route() {
    const parts = (location.hash || '#/overview').replace(/^#\/?/, '').split('/');
    const page = PAGES.find((p) => p.id === parts[0]) || PAGES[0];
    return { page, arg: parts[1] ? decodeURIComponent(parts[1]) : null };
  }

  function renderNav(current) {
    const nav = document.getElementById('nav');
    nav.replaceChildren(...PAGES.map((p) => h('a', {
      href: '#/' + p.id,
      class: p.id === current ? 'active' : null,
      'data-page': p.id,
    }, t('nav.' + p.id))));
  }

  function renderChrome() {
    document.documentElement.lang = locale();
    document.title = t('title') + (session ? ' · ' + session.party : '');
    document.getElementById('lang').textContent = t('lang.switch');
    if (session) {
      document.getElementById('party').textContent = session.party;
      const role = document.getElementById('role');
      role.textContent = t('role.' + session.role);
      role.className = 'pill role ' + session.role;
      document.getElementById('foot-version').textContent = 'Jingteng ' + session.version;
    }
  }

  let rendering = 0;
  async function show(keepFlash, message) {
    flash = keepFlash ? message : null;
    const ticket = ++rendering;
    const { page, arg } = route();
    renderChrome();
    renderNav(page.id);
    const main = document.getElementById('main');
    disposeCharts();
    main.dataset.page = page.id;
    main.dataset.ready = '';
    main.replaceChildren(h('p', { class: 'loading' }, t('loading')));
    const body = h('div', { class: 'page' });
    try {
      if (!session) session = await api('/api/session');
      renderChrome();
      await page.render(body, arg);
      if (ticket !== rendering) return;
      main.replaceChildren(body);
      const make = pendingCharts;
      pendingCharts = [];
      make.forEach((f) => f());
      main.dataset.ready = 'ok';
    } catch (e) {
      if (ticket !== rendering) return;
      disposeCharts();
      const text = e instanceof ApiError && e.status === 401 ? t('error.unauthorised') : e.message;
      main.replaceChildren(card(t('error.load'), null, h('p', { class: 'alert bad', id: 'page-error' }, text)));
      main.dataset.ready = 'error';
    }
  }

  document.getElementById('lang').addEventListener('click', () => {
    lang = lang === 'en' ? 'zh' : 'en';
    localStorage.setItem(LANG_KEY, lang);
    show();
  });
  window.addEventListener('hashchange', () => show());
  show();
})();
