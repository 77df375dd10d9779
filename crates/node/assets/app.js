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
      // Insight, campaigns, privacy budget (docs/dashboard.md).
      'nav.insight': 'Insight',
      'nav.campaigns': 'Campaigns',
      'nav.budget': 'Privacy budget',
      'cap.collaboration': 'Collaboration',
      'cap.host_here': 'Computed by this node, the host, on its joined view under the collaboration\'s privacy rules.',
      'cap.asked_host': 'Asked of the host {host} over mutual TLS; it answers on its joined view under the collaboration\'s privacy rules.',
      'cap.analyst': 'Budget charged to',
      'cap.mode': 'Release',
      'cap.mode_dp': 'differential privacy: ε {eps} per query, budget {budget} per analyst',
      'cap.mode_threshold': 'exact figures; rows under {k} people suppressed',
      'cap.budget_left': 'ε {spent} spent of {limit}; {left} left',
      'cap.computed': 'Computed',
      'cap.free_again': 'Opening this page again costs nothing: identical queries are answered from the cache. A new choice is a new query and spends ε.',
      'cap.release_dp': 'Noised: discrete Laplace, scale {scale}; 95% of answers within ±{bound}. Groups appear only when their noisy people count clears {t}; those that do not are left out unseen.',
      'cap.release_dp_ratio': 'Noised: a ratio of two noisy sums (scale {scale}).',
      'cap.release_threshold': 'Exact: every row covers at least {k} people; {n} row(s) suppressed.',
      'cap.release_public': 'No data about people read: exact.',
      'cap.cached': 'from the cache: no budget spent',
      'cap.spent': 'ε {eps} spent',
      'cap.noised': 'noised',
      'cap.exact': 'exact',
      'cap.error': '{code}: {detail}',
      'cap.nothing': 'Nothing released: every group covers too few people (or none cleared the noisy threshold).',
      'cap.apply': 'Apply',
      'model.last-touch': 'last touch',
      'model.first-touch': 'first touch',
      'model.linear': 'linear',
      'cap.budget': 'Privacy budget',
      'camp.releases_dp': 'Released by the engine: {n} queries under differential privacy; groups whose noisy people count did not clear the threshold are left out unseen.',
      'camp.none_campaign_dp': 'Nothing released for {c}: no group cleared the noisy threshold.',
      'budget.mode_dp': 'differential privacy',
      'budget.mode_threshold': 'threshold',
      'budget.h_mode': 'Mode',
      'budget.h_k': 'k (people per row)',
      'budget.h_eps': 'ε / query',
      'budget.h_limit': 'ε budget',
      'budget.h_groups': 'groups / person',
      'budget.h_rows': 'rows / person',
      'cap.people': 'people',
      'insight.choices': 'Choices',
      'insight.dimension': 'Profile by',
      'insight.of': 'Only people also known to',
      'insight.of_none': 'everyone',
      'insight.brand': 'Funnel brand',
      'insight.overlap_title': 'Overlap of the parties\' users',
      'insight.overlap_sub': 'People linked at every party of the set (whiskers: the 95% noise bound)',
      'insight.profile_title': 'Audience profile: people by {dim}',
      'insight.profile_of': 'among people also known to {of}',
      'insight.cross_title': 'Category cross-purchase',
      'insight.cross_sub': 'People who bought the row\'s category and also the column\'s, at the retailer',
      'insight.bought': 'bought',
      'insight.also': 'also bought',
      'insight.funnel_title': '4A funnel of {brand}, by month',
      'insight.funnel_sub': 'Aware: exposed to its ads on social · Appeal: clicked · Act: bought it at the retailer · Advocate: bought it again (each person at their highest stage of the month)',
      'insight.flow_title': 'Flows between stages, month to month ({brand})',
      'insight.flow_sub': 'Where the people at each stage of a month are the next month; “none”: reached no stage',
      'insight.set': 'Parties',
      'insight.figure': 'People',
      'insight.noise': 'Release',
      'stage.aware': 'Aware',
      'stage.appeal': 'Appeal',
      'stage.act': 'Act',
      'stage.advocate': 'Advocate',
      'stage.none': 'none',
      'camp.coverage': 'Stands on {matched} people linked between {media} ({mrate} of its {mrec}) and {retail} ({rrate} of its {rrec}): exposed buyers who were not linked are invisible, so conversions, GMV and ROAS are lower bounds and lift is measured on linked people only.',
      'camp.settings': '{model}, clicks within {click} d, views within {view} h, click preferred, at most {cap} credited orders per person',
      'camp.attr_title': 'Attribution per campaign',
      'camp.attr_sub': 'Spend (from the campaign table) and the attributed GMV and conversions of people linked to the retailer',
      'camp.spend': 'spend ¥',
      'camp.gmv': 'attributed GMV ¥',
      'camp.conversions': 'conversions',
      'camp.pick': 'Campaign',
      'camp.by_day': 'Attributed conversions by day',
      'camp.by_placement': 'Attributed conversions by placement',
      'camp.none_campaign': 'Nothing released for {c}: every group covers too few people ({n} group(s) over all campaigns left out).',
      'camp.lift_title': 'Incremental lift from the holdout (ITT difference, 95% interval)',
      'camp.lift_sub': 'Conversion rate of the test group minus the control group, in percentage points; the interval includes the DP noise',
      'camp.lift_none': 'No campaign has both its test and control group released: too few people in a group.',
      'camp.reach_title': 'Reach per campaign',
      'camp.reach_sub': 'People with at least one impression, de-duplicated across media parties through the match',
      'camp.dedup': 'reach (de-duplicated)',
      'camp.on': 'on {p}',
      'camp.freq_title': 'Frequency of {c}',
      'camp.freq_sub': 'People by impressions on all media parties together (10+ capped)',
      'camp.freq_none': 'No frequency bucket of {c} was released.',
      'camp.impressions': 'impressions',
      'camp.table_title': 'Campaigns',
      'camp.campaign': 'Campaign',
      'camp.brand': 'Brand',
      'camp.cpa': 'CPA ¥',
      'camp.roas': 'ROAS',
      'camp.cvr_click': 'CVR / click',
      'camp.test': 'Test (people, rate)',
      'camp.control': 'Control (people, rate)',
      'camp.itt': 'ITT difference',
      'camp.rel': 'Relative lift',
      'camp.incr': 'Incremental conv.',
      'camp.iroas': 'iROAS',
      'camp.suppressed': 'suppressed',
      'camp.releases': 'Released by the engine: {n} queries, {mode}; {s} group(s) suppressed.',
      'budget.settings': 'The contract\'s privacy settings',
      'budget.mode': 'Release mode',
      'budget.k': 'People per row (threshold mode)',
      'budget.eps': 'ε per query',
      'budget.limit': 'Budget per analyst (ε)',
      'budget.groups': 'Groups per person',
      'budget.rows': 'Rows per person and group',
      'budget.combined': 'in force (most restrictive)',
      'budget.per_party': 'Per party',
      'budget.party': 'Party',
      'budget.ledger_title': 'Remaining budget per analyst',
      'budget.ledger_sub': 'ε charged for released answers, reserved by queries running now, and left; refunded queries cost nothing',
      'budget.charged': 'charged',
      'budget.reserved': 'reserved',
      'budget.remaining': 'left',
      'budget.refunded': 'refunded',
      'budget.history_title': 'ε charged over time',
      'budget.analyst': 'Analyst (party:name)',
      'budget.queries': 'Queries',
      'budget.last': 'Last',
      'budget.you': 'this session',
      'budget.none': 'No DP query has been charged in this collaboration yet.',
      'budget.not_charged': 'not charged: exact release (threshold mode)',
      'budget.member': 'The ledger is kept by the host, {host}: this node\'s analysts spend their budget there. Below, the budget the host reported with its latest answers to this dashboard.',
      'budget.seen_none': 'The host has reported no budget to this dashboard yet (open Insight first).',
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
      // 洞察、营销活动、隐私预算
      'nav.insight': '洞察',
      'nav.campaigns': '营销活动',
      'nav.budget': '隐私预算',
      'cap.collaboration': '数据协作',
      'cap.host_here': '由本节点（主持方）在其连接视图上按协作的隐私规则计算。',
      'cap.asked_host': '通过双向 TLS 向主持方 {host} 查询；主持方在其连接视图上按协作的隐私规则作答。',
      'cap.analyst': '预算记入',
      'cap.mode': '发布方式',
      'cap.mode_dp': '差分隐私：每次查询 ε {eps}，每位分析师预算 {budget}',
      'cap.mode_threshold': '精确数值；少于 {k} 人的行不予发布',
      'cap.budget_left': '已用 ε {spent}，共 {limit}；剩余 {left}',
      'cap.computed': '计算时间',
      'cap.free_again': '再次打开本页不消耗预算：相同的查询由缓存作答。更换选项即为新的查询，会消耗 ε。',
      'cap.release_dp': '已加噪：离散拉普拉斯噪声，尺度 {scale}；95% 的结果误差在 ±{bound} 以内。仅当分组的加噪人数超过 {t} 时才显示，其余分组不可见。',
      'cap.release_dp_ratio': '已加噪：两个加噪总和之比（总和的尺度 {scale}）。',
      'cap.release_threshold': '精确：每行至少覆盖 {k} 人；{n} 行被抑制。',
      'cap.release_public': '未读取个人数据：精确。',
      'cap.cached': '来自缓存：未消耗预算',
      'cap.spent': '消耗 ε {eps}',
      'cap.noised': '已加噪',
      'cap.exact': '精确',
      'cap.error': '{code}：{detail}',
      'cap.nothing': '没有可发布的结果：每个分组覆盖的人数都太少（或均未超过加噪阈值）。',
      'cap.apply': '应用',
      'model.last-touch': '末次触点',
      'model.first-touch': '首次触点',
      'model.linear': '线性分配',
      'cap.budget': '隐私预算',
      'camp.releases_dp': '由引擎发布：{n} 次差分隐私查询；加噪人数未超过阈值的分组被略去，不可见。',
      'camp.none_campaign_dp': '{c} 没有可发布的结果：没有分组超过加噪阈值。',
      'budget.mode_dp': '差分隐私',
      'budget.mode_threshold': '阈值',
      'budget.h_mode': '方式',
      'budget.h_k': 'k（每行人数）',
      'budget.h_eps': '每次 ε',
      'budget.h_limit': 'ε 预算',
      'budget.h_groups': '每人分组数',
      'budget.h_rows': '每人行数',
      'cap.people': '人',
      'insight.choices': '选项',
      'insight.dimension': '画像维度',
      'insight.of': '仅限同时属于',
      'insight.of_none': '所有人',
      'insight.brand': '漏斗品牌',
      'insight.overlap_title': '各参与方用户的重合',
      'insight.overlap_sub': '在组合内每个参与方都有关联记录的人数（误差线：95% 噪声范围）',
      'insight.profile_title': '人群画像：按 {dim} 统计人数',
      'insight.profile_of': '限于同时属于 {of} 的人',
      'insight.cross_title': '品类交叉购买',
      'insight.cross_sub': '在零售方既购买了行品类、又购买了列品类的人数',
      'insight.bought': '购买',
      'insight.also': '同时购买',
      'insight.funnel_title': '{brand} 的 4A 漏斗（按月）',
      'insight.funnel_sub': '认知（Aware）：在社交平台看到其广告 · 吸引（Appeal）：点击 · 行动（Act）：在零售方购买 · 拥护（Advocate）：再次购买（每人按当月最高阶段计）',
      'insight.flow_title': '各阶段的月度流转（{brand}）',
      'insight.flow_sub': '每月处于各阶段的人在下个月所处的阶段；“无”：未进入任何阶段',
      'insight.set': '参与方组合',
      'insight.figure': '人数',
      'insight.noise': '发布方式',
      'stage.aware': '认知',
      'stage.appeal': '吸引',
      'stage.act': '行动',
      'stage.advocate': '拥护',
      'stage.none': '无',
      'camp.coverage': '基于 {media}（其 {mrec} 人中的 {mrate}）与 {retail}（其 {rrec} 人中的 {rrate}）之间关联的 {matched} 人：未关联的曝光购买者不可见，因此转化、GMV 与 ROAS 为下限，增量仅在已关联人群上衡量。',
      'camp.settings': '{model}，点击窗口 {click} 天，曝光窗口 {view} 小时，点击优先，每人最多 {cap} 笔归因订单',
      'camp.attr_title': '各营销活动的归因',
      'camp.attr_sub': '花费（来自营销活动表），以及与零售方关联人群的归因 GMV 与转化数',
      'camp.spend': '花费 ¥',
      'camp.gmv': '归因 GMV ¥',
      'camp.conversions': '转化数',
      'camp.pick': '营销活动',
      'camp.by_day': '按日的归因转化',
      'camp.by_placement': '按广告位的归因转化',
      'camp.none_campaign': '{c} 没有可发布的结果：每个分组覆盖的人数都太少（全部活动共有 {n} 个分组被略去）。',
      'camp.lift_title': '对照组增量（ITT 差值，95% 区间）',
      'camp.lift_sub': '测试组与对照组转化率之差（百分点）；区间已计入差分隐私噪声',
      'camp.lift_none': '没有营销活动同时发布了测试组和对照组：组内人数太少。',
      'camp.reach_title': '各营销活动的触达',
      'camp.reach_sub': '至少有一次曝光的人数，通过匹配在各媒体方之间去重',
      'camp.dedup': '触达（去重）',
      'camp.on': '{p} 上',
      'camp.freq_title': '{c} 的曝光频次',
      'camp.freq_sub': '按所有媒体方合计曝光次数统计的人数（10 次以上合并）',
      'camp.freq_none': '{c} 没有发布任何频次分组。',
      'camp.impressions': '曝光次数',
      'camp.table_title': '营销活动',
      'camp.campaign': '营销活动',
      'camp.brand': '品牌',
      'camp.cpa': 'CPA ¥',
      'camp.roas': 'ROAS',
      'camp.cvr_click': '点击转化率',
      'camp.test': '测试组（人数，转化率）',
      'camp.control': '对照组（人数，转化率）',
      'camp.itt': 'ITT 差值',
      'camp.rel': '相对增量',
      'camp.incr': '增量转化',
      'camp.iroas': 'iROAS',
      'camp.suppressed': '已抑制',
      'camp.releases': '由引擎发布：{n} 次查询，{mode}；{s} 个分组被抑制。',
      'budget.settings': '合约的隐私设置',
      'budget.mode': '发布方式',
      'budget.k': '每行最少人数（阈值模式）',
      'budget.eps': '每次查询的 ε',
      'budget.limit': '每位分析师的预算（ε）',
      'budget.groups': '每人最多计入的分组数',
      'budget.rows': '每人每组最多行数',
      'budget.combined': '生效值（取最严格者）',
      'budget.per_party': '各参与方',
      'budget.party': '参与方',
      'budget.ledger_title': '各分析师的剩余预算',
      'budget.ledger_sub': '已发布结果扣除的 ε、正在运行的查询预留的 ε 及剩余额度；失败并退还的查询不计费',
      'budget.charged': '已扣除',
      'budget.reserved': '已预留',
      'budget.remaining': '剩余',
      'budget.refunded': '已退还',
      'budget.history_title': 'ε 扣除随时间变化',
      'budget.analyst': '分析师（参与方:名称）',
      'budget.queries': '查询数',
      'budget.last': '最近',
      'budget.you': '当前会话',
      'budget.none': '本协作尚未扣除任何差分隐私查询的预算。',
      'budget.not_charged': '不扣预算：精确发布（阈值模式）',
      'budget.member': '预算台账由主持方 {host} 保存：本节点的分析师在主持方消耗预算。下方为主持方随最近答复向本控制台报告的预算。',
      'budget.seen_none': '主持方尚未向本控制台报告预算（请先打开“洞察”页）。',
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
  //   { id: 'audiences', render: renderAudiences }  sizes, versions, create
  // with 'nav.<id>' and the page's strings in I18N. Insight (overlap, profile,
  // cross-purchase, 4A funnel and flows), Campaigns (attribution, lift, reach) and
  // Privacy budget are here.

  const PAGES = [
    { id: 'overview', render: renderOverview },
    { id: 'match', render: renderMatch },
    { id: 'insight', render: renderInsight },
    { id: 'campaigns', render: renderCampaigns },
    { id: 'budget', render: renderBudget },
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
  // Insight, campaigns, privacy budget: figures released by the query engine under
  // the collaboration's privacy rules (at the host, or asked of it by a member).

  const fmt = (x, d) => (x === null || x === undefined ? t('none') : Number(x).toLocaleString(locale(), { maximumFractionDigits: d === undefined ? 2 : d }));
  const yuan = (fen) => (fen === null || fen === undefined ? t('none') : (fen / 100).toLocaleString(locale(), { minimumFractionDigits: 2, maximumFractionDigits: 2 }));
  const pp = (x) => (x === null || x === undefined ? t('none') : (x >= 0 ? '+' : '') + (100 * x).toFixed(2) + 'pt');
  const month = (s) => String(s).slice(0, 7);
  // Tooltips are HTML: data in them (categories, ids) is escaped first.
  const esc = (x) => String(x).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }[c]));
  const stageName = (s) => (I18N.en['stage.' + s] ? t('stage.' + s) : s);
  const STAGES = ['aware', 'appeal', 'act', 'advocate'];
  const STAGE_COLOR = { aware: '#0052d9', appeal: '#8b5cf6', act: '#f59e0b', advocate: '#d7261e', none: '#cbd5e1' };

  // The query string of a capability page: its collaboration and choices.
  function query(params) {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(params)) if (v !== null && v !== undefined) q.set(k, v);
    const s = q.toString();
    return s ? '?' + s : '';
  }

  // One line per released answer: how it was released, and what it cost.
  function releaseNote(answer) {
    const r = answer.release || {};
    const lines = [];
    if (r.mode === 'dp') {
      for (const n of r.noise || []) {
        lines.push(n.bound95 === null || n.bound95 === undefined
          ? t('cap.release_dp_ratio', { scale: fmt(n.scale, 1) })
          : t('cap.release_dp', { scale: fmt(n.scale, 1), bound: fmt(n.bound95, 1), t: r.selection_threshold }));
      }
      if (!lines.length) lines.push(t('cap.release_dp', { scale: '?', bound: '?', t: r.selection_threshold }));
    } else if (r.mode === 'threshold') {
      lines.push(t('cap.release_threshold', { k: r.min_people, n: r.suppressed_rows || 0 }));
    } else {
      lines.push(t('cap.release_public'));
    }
    const cost = answer.cached ? badge(t('cap.cached'), 'ok')
      : (r.mode === 'dp' ? badge(t('cap.spent', { eps: r.epsilon }), 'warn') : null);
    return h('p', { class: 'muted release' },
      r.mode === 'dp' ? badge(t('cap.noised'), 'info') : badge(t('cap.exact'), 'ok'), ' ', cost, ' ', lines.join(' '));
  }

  function partError(part) {
    const e = part.error;
    return h('p', { class: 'alert bad part-error' }, t('cap.error', { code: e.code, detail: e.detail }));
  }

  function modeLine(p) {
    return p.mode === 'dp'
      ? t('cap.mode_dp', { eps: p.epsilon, budget: p.budget })
      : t('cap.mode_threshold', { k: p.min_people });
  }

  // The analyst's budget (DP mode; threshold mode spends none).
  function budgetLine(b, privacy) {
    if (privacy && privacy.mode !== 'dp') return t('budget.not_charged');
    return b ? t('cap.budget_left', { spent: fmt(b.spent), limit: fmt(b.limit), left: fmt(b.remaining) }) : t('none');
  }

  function collabPicker(d, hash) {
    if (!d.collaborations || d.collaborations.length < 2) return d.collaboration;
    return h('select', {
      class: 'collab-picker',
      onchange: (e) => { location.hash = hash + '/' + encodeURIComponent(e.target.value); },
    }, d.collaborations.map((c) => h('option', { value: c, selected: c === d.collaboration }, c)));
  }

  // An error-bar series: [index, low, high] whiskers drawn over a category axis.
  function whiskers(name, data, horizontal) {
    return {
      name,
      type: 'custom',
      silent: true,
      z: 10,
      renderItem: (params, api) => {
        const i = api.value(0);
        const lo = horizontal ? api.coord([api.value(1), i]) : api.coord([i, api.value(1)]);
        const hi = horizontal ? api.coord([api.value(2), i]) : api.coord([i, api.value(2)]);
        const w = 6;
        const style = { stroke: '#374151', lineWidth: 1.5 };
        const line = (x1, y1, x2, y2) => ({ type: 'line', shape: { x1, y1, x2, y2 }, style });
        return {
          type: 'group',
          children: horizontal
            ? [line(lo[0], lo[1], hi[0], hi[1]), line(lo[0], lo[1] - w, lo[0], lo[1] + w), line(hi[0], hi[1] - w, hi[0], hi[1] + w)]
            : [line(lo[0], lo[1], hi[0], hi[1]), line(lo[0] - w, lo[1], lo[0] + w, lo[1]), line(hi[0] - w, hi[1], hi[0] + w, hi[1])],
        };
      },
      encode: horizontal ? { x: [1, 2], y: 0 } : { x: 0, y: [1, 2] },
      data,
    };
  }

  let insightChoice = {};

  async function renderInsight(main, arg) {
    const d = await api('/api/insight' + query(Object.assign({ collab: arg }, insightChoice)));
    const operatorOrAnalyst = d.analyst;
    const dimSelect = h('select', { id: 'insight-dimension' },
      d.dimensions.map((x) => h('option', { value: x, selected: x === d.choice.dimension }, x)));
    const ofSelect = h('select', { id: 'insight-of' },
      [h('option', { value: '', selected: !d.choice.of }, t('insight.of_none'))].concat(
        d.parties.map((p) => h('option', { value: p, selected: p === d.choice.of }, p))));
    const brandInput = h('input', { id: 'insight-brand', type: 'text', value: d.choice.brand, size: 12, maxlength: 64, list: 'insight-brands' });
    const brands = h('datalist', { id: 'insight-brands' }, (d.brands || []).map((b) => h('option', { value: b })));
    const apply = h('button', {
      type: 'button',
      class: 'primary',
      id: 'insight-apply',
      onclick: () => {
        insightChoice = { dimension: dimSelect.value, of: ofSelect.value, brand: brandInput.value.trim() };
        show();
      },
    }, t('cap.apply'));
    main.append(card(null, null,
      h('div', { class: 'card-head' }, h('h2', {}, t('nav.insight')), collabPicker(d, '#/insight')),
      dl([
        [t('cap.collaboration'), d.collaboration],
        [t('cap.mode'), modeLine(d.privacy)],
        [t('cap.analyst'), code(operatorOrAnalyst)],
        [t('cap.budget'), budgetLine(d.budget, d.privacy)],
        [t('cap.computed'), when(d.computed_ms)],
      ]),
      h('p', { class: 'muted' }, d.is_host ? t('cap.host_here') : t('cap.asked_host', { host: d.host })),
      h('div', { class: 'actions choices' },
        h('label', {}, t('insight.dimension'), ' ', dimSelect),
        h('label', {}, t('insight.of'), ' ', ofSelect),
        h('label', {}, t('insight.brand'), ' ', brandInput, brands),
        apply),
      h('p', { class: 'muted' }, t('cap.free_again'))));

    const parts = d.parts;
    // Overlap: one released count per set of parties.
    const overlap = parts.overlap;
    if (overlap.error) {
      main.append(card(t('insight.overlap_title'), null, partError(overlap)));
    } else {
      const sets = overlap.steps.map((s) => {
        const a = s.answer;
        const v = a.rows.length ? Number(a.rows[0][0]) : null;
        const n = (a.release.noise || [])[0];
        return { name: s.title, value: v, bound: n && n.bound95 !== undefined ? n.bound95 : null, answer: a };
      });
      const shown = sets.filter((x) => x.value !== null);
      const body = [];
      if (shown.length) {
        body.push(chart({
          tooltip: { trigger: 'axis', axisPointer: { type: 'shadow' } },
          grid: { left: 170, right: 72, top: 8, bottom: 24 },
          xAxis: { type: 'value', min: 0 },
          yAxis: { type: 'category', data: shown.map((x) => x.name) },
          series: [{
            name: t('insight.figure'),
            type: 'bar',
            barMaxWidth: 26,
            data: shown.map((x) => x.value),
            label: { show: true, position: 'right', distance: 14, formatter: (p) => num(p.value) },
          }, whiskers('±95%', shown.filter((x) => x.bound !== null)
            .map((x) => [shown.indexOf(x), Math.max(0, x.value - x.bound), x.value + x.bound]), true)],
        }, 60 + 44 * shown.length));
      } else {
        body.push(empty(t('cap.nothing')));
      }
      body.push(table([t('insight.set'), t('insight.figure'), t('insight.noise')], sets.map((x) => [
        x.name,
        x.value === null ? t('camp.suppressed') : num(x.value) + (x.bound !== null ? ' ± ' + fmt(x.bound, 1) : ''),
        releaseNote(x.answer),
      ]), 'num'));
      main.append(card(t('insight.overlap_title'), t('insight.overlap_sub'), ...body));
    }

    const grid = [];
    // Profile: people by one dimension.
    const profile = parts.profile;
    if (profile) {
      const title = t('insight.profile_title', { dim: d.choice.dimension || '' });
      const sub = d.choice.of ? t('insight.profile_of', { of: d.choice.of }) : null;
      if (profile.error) {
        grid.push(card(title, sub, partError(profile)));
      } else {
        const a = profile.steps[0].answer;
        const rows = a.rows.slice().sort((x, y) => String(x[0]).localeCompare(String(y[0])));
        grid.push(card(title, sub, rows.length ? chart({
          tooltip: { trigger: 'axis', axisPointer: { type: 'shadow' } },
          grid: { left: 56, right: 16, top: 24, bottom: 32 },
          xAxis: { type: 'category', data: rows.map((r) => r[0] === null ? t('none') : String(r[0])) },
          yAxis: { type: 'value' },
          series: [{
            name: t('cap.people'), type: 'bar', barMaxWidth: 48, data: rows.map((r) => r[1]),
            itemStyle: { color: PALETTE[1] },
            label: { show: true, position: 'top', formatter: (p) => num(p.value) },
          }],
        }, 280) : empty(t('cap.nothing')), releaseNote(a)));
      }
    }
    // Cross-purchase: a heat map of categories bought together.
    const cross = parts.cross_purchase;
    if (cross.error) {
      grid.push(card(t('insight.cross_title'), null, partError(cross)));
    } else {
      const a = cross.steps[0].answer;
      const cats = Array.from(new Set(a.rows.flatMap((r) => [String(r[0]), String(r[1])]))).sort();
      const values = a.rows.map((r) => [cats.indexOf(String(r[1])), cats.indexOf(String(r[0])), r[2]]);
      const max = Math.max(1, ...a.rows.map((r) => Number(r[2]) || 0));
      grid.push(card(t('insight.cross_title'), t('insight.cross_sub'), a.rows.length ? chart({
        tooltip: {
          formatter: (p) => esc(t('insight.bought') + ' ' + cats[p.value[1]] + ' · ' + t('insight.also') + ' '
            + cats[p.value[0]]) + ': <b>' + num(p.value[2]) + '</b>',
        },
        grid: { left: 110, right: 16, top: 8, bottom: 96 },
        xAxis: { type: 'category', data: cats, name: t('insight.also'), nameLocation: 'middle', nameGap: 78, axisLabel: { rotate: 40 }, splitArea: { show: true } },
        yAxis: { type: 'category', data: cats, name: t('insight.bought'), splitArea: { show: true } },
        visualMap: { min: 0, max, calculable: false, orient: 'horizontal', left: 'right', bottom: 0, itemHeight: 80, show: false, inRange: { color: ['#eff6ff', '#0052d9'] } },
        series: [{ name: t('cap.people'), type: 'heatmap', data: values, label: { show: cats.length <= 10, fontSize: 10 } }],
      }, 360) : empty(t('cap.nothing')), releaseNote(a)));
    }
    main.append(h('div', { class: 'grid2' }, grid));

    // The 4A funnel per month, and its flows.
    const funnel = parts.funnel;
    const brand = d.choice.brand;
    if (funnel.error) {
      main.append(card(t('insight.funnel_title', { brand }), null, partError(funnel)));
      return;
    }
    const [stages, flows] = funnel.steps;
    const sa = stages.answer;
    const months = Array.from(new Set(sa.rows.map((r) => month(r[0])))).sort();
    const at = (m, st) => {
      const r = sa.rows.find((x) => month(x[0]) === m && x[1] === st);
      return r ? r[2] : null;
    };
    const stageSeries = STAGES.map((st) => ({
      name: stageName(st), type: 'bar', barMaxWidth: 36, itemStyle: { color: STAGE_COLOR[st] },
      data: months.map((m) => at(m, st)),
    })).filter((s) => s.data.some((v) => v !== null));
    main.append(card(t('insight.funnel_title', { brand }), t('insight.funnel_sub'), sa.rows.length ? chart({
      tooltip: { trigger: 'axis', axisPointer: { type: 'shadow' } },
      legend: { top: 0 },
      grid: { left: 56, right: 16, top: 40, bottom: 32 },
      xAxis: { type: 'category', data: months },
      yAxis: { type: 'value' },
      series: stageSeries,
    }, 300) : empty(t('cap.nothing')), releaseNote(sa)));

    const fa = flows.answer;
    const next = (m) => {
      const [y, mo] = m.split('-').map(Number);
      return mo === 12 ? (y + 1) + '-01' : y + '-' + String(mo + 1).padStart(2, '0');
    };
    const nodes = new Map();
    const node = (m, st) => {
      const name = m + ' · ' + stageName(st);
      if (!nodes.has(name)) nodes.set(name, { name, itemStyle: { color: STAGE_COLOR[st] || '#64748b' }, depth: months.indexOf(m) >= 0 ? months.indexOf(m) : months.length });
      return name;
    };
    const links = fa.rows.filter((r) => Number(r[3]) > 0).map((r) => {
      const m = month(r[0]);
      return { source: node(m, r[1]), target: node(next(m), r[2]), value: r[3] };
    });
    main.append(card(t('insight.flow_title', { brand }), t('insight.flow_sub'), links.length ? chart({
      tooltip: { trigger: 'item', triggerOn: 'mousemove' },
      series: [{
        type: 'sankey',
        name: t('insight.flow_title', { brand }),
        data: Array.from(nodes.values()),
        links,
        nodeAlign: 'left',
        nodeGap: 10,
        emphasis: { focus: 'adjacency' },
        lineStyle: { color: 'gradient', curveness: 0.5, opacity: 0.35 },
        label: { fontSize: 11 },
        left: 8, right: 90, top: 8, bottom: 8,
      }],
    }, 420) : empty(t('cap.nothing')), releaseNote(fa)));
  }

  let campaignPick = null;

  function releasesSummary(released) {
    let s = 0;
    let dp = false;
    for (const r of released || []) {
      s += (r.release && r.release.suppressed_rows) || 0;
      dp = dp || (r.release && r.release.mode === 'dp');
    }
    const cached = (released || []).length && released.every((r) => r.cached || r.release.mode === 'public');
    const n = (released || []).length;
    return h('p', { class: 'muted release' },
      dp ? badge(t('cap.noised'), 'info') : badge(t('cap.exact'), 'ok'), ' ',
      cached ? badge(t('cap.cached'), 'ok') : null, ' ',
      dp ? t('camp.releases_dp', { n }) : t('camp.releases', { n, mode: t('cap.exact'), s }));
  }

  async function renderCampaigns(main, arg) {
    const d = await api('/api/campaigns' + query({ collab: arg }));
    const at = d.attribution;
    const lift = d.lift;
    const reach = d.reach;
    const cov = (at && at.coverage) || (lift && lift.coverage);
    const head = [
      [t('cap.collaboration'), d.collaboration],
      [t('cap.analyst'), code(d.analyst)],
      [t('cap.budget'), budgetLine(d.budget, d.privacy)],
      [t('cap.computed'), when(d.computed_ms)],
    ];
    if (at && at.settings) {
      const s = at.settings;
      head.splice(1, 0, [t('camp.attr_title'), t('camp.settings', {
        model: I18N.en['model.' + s.model] ? t('model.' + s.model) : s.model, click: s.click_window_s / 86400, view: s.view_window_s / 3600, cap: s.cap,
      })]);
    }
    main.append(card(null, null,
      h('div', { class: 'card-head' }, h('h2', {}, t('nav.campaigns')), collabPicker(d, '#/campaigns')),
      dl(head),
      h('p', { class: 'muted' }, d.is_host ? t('cap.host_here') : t('cap.asked_host', { host: d.host })),
      cov ? h('p', { class: 'muted' }, t('camp.coverage', {
        matched: num(cov.matched), media: (reach && reach.parties && reach.parties[0]) || 'media',
        mrate: pct(cov.media_match_rate), mrec: num(cov.media_records), retail: 'retail',
        rrate: pct(cov.retail_match_rate), rrec: num(cov.retail_records),
      })) : null,
      h('p', { class: 'muted' }, t('cap.free_again'))));

    // Attribution per campaign: spend, attributed GMV and conversions.
    const ids = [];
    if (at.error) {
      main.append(card(t('camp.attr_title'), null, partError(at)));
    } else {
      const cs = at.campaigns;
      cs.forEach((c) => ids.push(c.campaign_id));
      main.append(card(t('camp.attr_title'), t('camp.attr_sub'), chart({
        tooltip: { trigger: 'axis', axisPointer: { type: 'shadow' } },
        legend: { top: 0 },
        grid: { left: 64, right: 56, top: 40, bottom: 32 },
        xAxis: { type: 'category', data: cs.map((c) => c.campaign_id) },
        yAxis: [{ type: 'value', name: '¥' }, { type: 'value', name: t('camp.conversions'), splitLine: { show: false } }],
        series: [
          { name: t('camp.spend'), type: 'bar', barMaxWidth: 18, itemStyle: { color: '#94a3b8' }, data: cs.map((c) => c.spend_fen / 100) },
          { name: t('camp.gmv'), type: 'bar', barMaxWidth: 18, itemStyle: { color: PALETTE[0] }, data: cs.map((c) => (c.released ? c.gmv_fen / 100 : null)) },
          { name: t('camp.conversions'), type: 'line', yAxisIndex: 1, symbolSize: 6, itemStyle: { color: PALETTE[2] }, connectNulls: false, data: cs.map((c) => (c.released ? c.conversions : null)) },
        ],
      }, 320), releasesSummary(at.released)));
    }

    // Breakdowns of one campaign, its frequency: a campaign picker.
    const breakdown = (dim) => (at.breakdowns || []).find((b) => b.dimension === dim);
    const day = breakdown('day');
    const placement = breakdown('placement');
    const freqOf = (id) => ((reach && reach.campaigns) || []).find((c) => c.campaign_id === id);
    const score = (id) => ((day && day.rows.filter((r) => r.campaign_id === id).length) || 0) * 100
      + ((placement && placement.rows.filter((r) => r.campaign_id === id).length) || 0) * 10
      + ((freqOf(id) && freqOf(id).frequency.filter((b) => b.people !== null).length) || 0);
    if (!ids.includes(campaignPick)) {
      campaignPick = ids.slice().sort((a, b) => score(b) - score(a))[0] || null;
    }
    if (campaignPick) {
      const c = campaignPick;
      const picker = h('select', {
        id: 'campaign-picker',
        onchange: (e) => { campaignPick = e.target.value; show(); },
      }, ids.map((id) => h('option', { value: id, selected: id === c }, id + ' · ' + ((at.campaigns.find((x) => x.campaign_id === id) || {}).brand || ''))));
      const nothing = (dim) => {
        const r = (at.released || []).find((x) => x.what.endsWith('and ' + dim));
        return r && r.release.mode === 'dp'
          ? t('camp.none_campaign_dp', { c })
          : t('camp.none_campaign', { c, n: (r && r.release.suppressed_rows) || 0 });
      };
      const dayRows = day ? day.rows.filter((r) => r.campaign_id === c).sort((a, b) => a.value.localeCompare(b.value)) : [];
      const placeRows = placement ? placement.rows.filter((r) => r.campaign_id === c) : [];
      const f = freqOf(c);
      const buckets = f ? f.frequency.filter((b) => b.people !== null) : [];
      main.append(card(null, null, h('div', { class: 'card-head' }, h('h2', {}, t('camp.pick')), picker)));
      main.append(h('div', { class: 'grid2' },
        card(t('camp.by_day'), c, dayRows.length ? chart({
          tooltip: { trigger: 'axis' },
          grid: { left: 56, right: 16, top: 24, bottom: 32 },
          xAxis: { type: 'category', data: dayRows.map((r) => r.value) },
          yAxis: { type: 'value' },
          series: [{ name: t('camp.conversions'), type: 'line', areaStyle: { opacity: 0.15 }, data: dayRows.map((r) => r.conversions) }],
        }, 260) : empty(nothing('day'))),
        card(t('camp.by_placement'), c, placeRows.length ? chart({
          tooltip: { trigger: 'item' },
          series: [{
            name: t('camp.by_placement'), type: 'pie', radius: ['40%', '68%'],
            label: { formatter: (p) => p.name + ': ' + fmt(p.value, 1) },
            data: placeRows.map((r) => ({ name: r.value, value: r.conversions })),
          }],
        }, 260) : empty(nothing('placement')))));
      main.append(card(t('camp.freq_title', { c }), t('camp.freq_sub'), buckets.length ? chart({
        tooltip: { trigger: 'axis', axisPointer: { type: 'shadow' } },
        grid: { left: 56, right: 16, top: 24, bottom: 40 },
        xAxis: { type: 'category', data: f.frequency.map((b) => b.impressions), name: t('camp.impressions'), nameLocation: 'middle', nameGap: 26 },
        yAxis: { type: 'value' },
        series: [{ name: t('cap.people'), type: 'bar', barMaxWidth: 40, itemStyle: { color: PALETTE[3] }, data: f.frequency.map((b) => b.people), label: { show: true, position: 'top' } }],
      }, 240) : empty(t('camp.freq_none', { c }))));
    }

    // Lift: ITT difference per campaign with its 95% interval.
    if (lift.error) {
      main.append(card(t('camp.lift_title'), null, partError(lift)));
    } else {
      const withLift = lift.campaigns.filter((c) => c.itt_difference);
      main.append(card(t('camp.lift_title'), t('camp.lift_sub'), withLift.length ? chart({
        tooltip: {
          trigger: 'axis',
          formatter: (ps) => {
            const c = withLift[ps[0].dataIndex];
            const i = c.itt_difference;
            return esc(c.campaign_id) + '<br>' + pp(i.estimate) + ' [' + pp(i.low) + ', ' + pp(i.high) + ']';
          },
        },
        grid: { left: 64, right: 16, top: 16, bottom: 32 },
        xAxis: { type: 'category', data: withLift.map((c) => c.campaign_id) },
        yAxis: { type: 'value', axisLabel: { formatter: (v) => v + 'pt' } },
        series: [
          { name: t('camp.itt'), type: 'scatter', symbolSize: 10, itemStyle: { color: PALETTE[0] }, data: withLift.map((c) => Math.round(c.itt_difference.estimate * 10000) / 100) },
          whiskers('95%', withLift.map((c, i) => [i, 100 * c.itt_difference.low, 100 * c.itt_difference.high]), false),
        ],
      }, 300) : empty(t('camp.lift_none')), releasesSummary(lift.released)));
    }

    // Reach per campaign, de-duplicated across the media parties.
    if (reach.error) {
      main.append(card(t('camp.reach_title'), null, partError(reach)));
    } else {
      const cs = reach.campaigns;
      const series = [{ name: t('camp.dedup'), type: 'bar', barMaxWidth: 18, itemStyle: { color: PALETTE[3] }, data: cs.map((c) => c.deduplicated) }];
      if (reach.parties.length > 1) {
        reach.parties.forEach((p, i) => series.push({
          name: t('camp.on', { p }), type: 'bar', barMaxWidth: 14, itemStyle: { color: PALETTE[4 + (i % 3)] },
          data: cs.map((c) => ((c.parties.find((x) => x.party === p) || {}).reach ?? null)),
        }));
      }
      main.append(card(t('camp.reach_title'), t('camp.reach_sub'), cs.length ? chart({
        tooltip: { trigger: 'axis', axisPointer: { type: 'shadow' } },
        legend: { top: 0 },
        grid: { left: 56, right: 16, top: 40, bottom: 32 },
        xAxis: { type: 'category', data: cs.map((c) => c.campaign_id) },
        yAxis: { type: 'value' },
        series,
      }, 300) : empty(t('cap.nothing')), releasesSummary(reach.released)));
    }

    // Every figure of every campaign, as a table.
    const rate = (g) => (g ? num(g.people) + ' · ' + pct(g.rate) : t('none'));
    const iv = (i, f) => (i ? f(i.estimate) + ' [' + f(i.low) + ', ' + f(i.high) + ']' : t('none'));
    main.append(card(t('camp.table_title'), null, table([
      t('camp.campaign'), t('camp.brand'), t('camp.spend'), t('camp.conversions'), t('camp.gmv'), t('camp.cvr_click'),
      t('camp.cpa'), t('camp.roas'), t('camp.test'), t('camp.control'), t('camp.itt'), t('camp.rel'), t('camp.incr'), t('camp.iroas'),
    ], (at.campaigns || []).map((c) => {
      const l = ((lift && lift.campaigns) || []).find((x) => x.campaign_id === c.campaign_id) || {};
      return [c.campaign_id, c.brand, yuan(c.spend_fen),
        c.released ? fmt(c.conversions, 2) : t('camp.suppressed'), c.released ? yuan(c.gmv_fen) : t('none'),
        c.cvr_click === null ? t('none') : pct(c.cvr_click), yuan(c.cpa_fen), fmt(c.roas),
        rate(l.test), rate(l.control), iv(l.itt_difference, pp),
        iv(l.relative_lift, (x) => (x >= 0 ? '+' : '') + (100 * x).toFixed(1) + '%'), fmt(l.incremental_conversions, 1),
        iv(l.iroas_interval, (x) => fmt(x, 2))];
    }), 'num')));
  }

  async function renderBudget(main, arg) {
    const d = await api('/api/budget' + query({ collab: arg }));
    const c = d.combined;
    const row = (p) => [t(p.mode === 'dp' ? 'budget.mode_dp' : 'budget.mode_threshold'), num(p.min_people), fmt(p.epsilon), fmt(p.budget), num(p.max_groups_per_person), num(p.max_rows_per_person)];
    main.append(card(null, null,
      h('div', { class: 'card-head' }, h('h2', {}, t('budget.settings')), collabPicker(d, '#/budget')),
      dl([
        [t('cap.collaboration'), d.collaboration],
        [t('budget.mode'), modeLine(c)],
        [t('budget.eps'), fmt(c.epsilon)],
        [t('budget.limit'), fmt(c.budget)],
        [t('budget.k'), num(c.min_people)],
        [t('budget.groups'), num(c.max_groups_per_person)],
        [t('budget.rows'), num(c.max_rows_per_person)],
      ]),
      h('h3', {}, t('budget.per_party')),
      table([t('budget.party'), t('budget.h_mode'), t('budget.h_k'), t('budget.h_eps'), t('budget.h_limit'), t('budget.h_groups'), t('budget.h_rows')],
        d.parties.map((p) => [p.party].concat(row(p.privacy))).concat([[h('strong', {}, t('budget.combined'))].concat(row(c))]), 'num')));

    const stack = (list) => chart({
      tooltip: { trigger: 'axis', axisPointer: { type: 'shadow' } },
      legend: { top: 0 },
      grid: { left: 150, right: 24, top: 36, bottom: 24 },
      xAxis: { type: 'value', max: d.limit, name: 'ε' },
      yAxis: { type: 'category', data: list.map((a) => a.analyst), inverse: true },
      series: [
        { name: t('budget.charged'), type: 'bar', stack: 'b', barMaxWidth: 22, itemStyle: { color: PALETTE[0] }, data: list.map((a) => a.charged) },
        { name: t('budget.reserved'), type: 'bar', stack: 'b', barMaxWidth: 22, itemStyle: { color: PALETTE[2] }, data: list.map((a) => a.reserved) },
        { name: t('budget.remaining'), type: 'bar', stack: 'b', barMaxWidth: 22, itemStyle: { color: '#10b981' }, data: list.map((a) => a.remaining) },
      ],
    }, Math.max(180, 40 * list.length + 70));

    if (!d.is_host) {
      const seen = d.seen.map((s) => ({
        analyst: s.analyst, charged: s.budget.spent, reserved: 0, remaining: s.budget.remaining,
      }));
      main.append(card(t('budget.ledger_title'), t('budget.member', { host: d.host }),
        seen.length ? stack(seen) : empty(t('budget.seen_none')),
        seen.length ? table([t('budget.analyst'), t('budget.charged'), t('budget.remaining')], seen.map((a) => [
          h('span', {}, code(a.analyst), ' ', a.analyst === d.you ? badge(t('budget.you'), 'you') : null),
          fmt(a.charged), h('strong', {}, fmt(a.remaining)),
        ]), 'num') : null));
      return;
    }
    if (!d.analysts.length) {
      main.append(card(t('budget.ledger_title'), null, empty(t('budget.none'))));
      return;
    }
    main.append(h('div', { class: 'grid2' },
      card(t('budget.ledger_title'), t('budget.ledger_sub'), stack(d.analysts)),
      card(t('budget.history_title'), null, chart({
        tooltip: { trigger: 'axis' },
        legend: { top: 0, type: 'scroll' },
        grid: { left: 48, right: 24, top: 36, bottom: 32 },
        xAxis: { type: 'time' },
        yAxis: { type: 'value', max: d.limit, name: 'ε' },
        series: d.analysts.map((a) => ({ name: a.analyst, type: 'line', step: 'end', symbolSize: 5, data: a.history })),
      }, Math.max(180, 40 * d.analysts.length + 70)))));
    main.append(card(null, null, table([t('budget.analyst'), t('budget.queries'), t('budget.charged'), t('budget.reserved'),
      t('budget.refunded'), t('budget.remaining'), t('budget.last')], d.analysts.map((a) => [
      h('span', {}, code(a.analyst), ' ', a.analyst === d.you ? badge(t('budget.you'), 'you') : null),
      num(a.queries), fmt(a.charged), fmt(a.reserved), fmt(a.refunded), h('strong', {}, fmt(a.remaining)), whenCell(a.last_ms),
    ]), 'num')));
  }

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
      // Once the page is laid out (scroll bars included), charts take their final size.
      requestAnimationFrame(() => charts.forEach((c) => c.resize()));
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
