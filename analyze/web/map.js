// smap's map page: draws the topology in #smap-data with Cytoscape.js (fcose layout),
// lists it as tables, and steps through time frames, marks findings or follows a live
// `smap watch`. It draws what the engine computed and derives nothing but display.
'use strict';
(function () {
  var data = JSON.parse(document.getElementById('smap-data').textContent);
  var $ = function (id) { return document.getElementById(id); };
  cytoscape.use(cytoscapeFcose);

  // Past this many services a map opens with its namespaces collapsed.
  var COLLAPSE_ABOVE = 150;
  var KINDS = ['service', 'workload', 'external', 'node'];
  var HEALTH_COLOURS = { healthy: '#2e7d32', degraded: '#f9a825', down: '#c62828', unknown: '#9e9e9e' };
  var SHAPES = { service: 'round-rectangle', workload: 'ellipse', external: 'diamond', node: 'hexagon' };

  var state = {
    topology: data.topology || null,
    frame: data.frames.length ? data.frames.length - 1 : -1,
    collapsed: new Set(),
    hiddenNamespaces: new Set(),
    hiddenKinds: new Set(),
    search: '',
    positions: new Map(),
    firstLayout: true,
    updates: 0,
  };
  var marks = indexMarks(data.marks);
  var cy = cytoscape({
    container: $('graph'),
    style: graphStyle(),
    wheelSensitivity: 0.3,
    minZoom: 0.05,
    maxZoom: 4,
  });

  function indexMarks(m) {
    var out = { nodes: new Map(), edges: new Map(), removedServices: [], removedDependencies: [] };
    if (!m) return out;
    Object.keys(m.nodes).forEach(function (id) { out.nodes.set(id, m.nodes[id]); });
    m.edges.forEach(function (e) { out.edges.set(pairKey(e.source, e.destination), e); });
    out.removedServices = m.removed_services;
    out.removedDependencies = m.removed_dependencies;
    return out;
  }

  function pairKey(source, destination) { return source + '\u0000' + destination; }
  function namespaceOf(service) { return service.kind === 'node' ? '(nodes)' : service.namespace; }
  function groupId(namespace) { return 'ns:' + namespace; }

  // The topology shown now: the live or fixed one, or the selected frame, whose
  // services take their details from the last frame's topology.
  function currentTopology() {
    if (state.frame < 0 || state.frame === data.frames.length - 1) return state.topology;
    var frame = data.frames[state.frame];
    var services = {};
    Object.keys(frame.services).forEach(function (id) {
      var f = frame.services[id];
      var base = f.service || state.topology.services[id];
      services[id] = Object.assign({}, base, { health: f.health, endpoints: f.endpoints });
    });
    var edges = frame.edges.map(function (r) {
      return { source: r[0], destination: r[1], protocol: r[2], port: r[3], connections: r[4],
        failed: r[5], bytes_sent: r[6], bytes_received: r[7] };
    });
    return { window: { start: state.topology.window.start, end: frame.time }, services: services, edges: edges };
  }

  function visible(service) {
    return !state.hiddenKinds.has(service.kind) && !state.hiddenNamespaces.has(namespaceOf(service));
  }

  // Cytoscape elements by id for a topology: services inside namespace groups (or a
  // collapsed group in their place), one edge per caller and callee summing its ports.
  function elementsOf(topology) {
    var nodes = new Map();
    var shownAs = new Map();
    Object.keys(topology.services).forEach(function (id) {
      var s = topology.services[id];
      if (!visible(s)) return;
      var ns = namespaceOf(s);
      if (!nodes.has(groupId(ns))) {
        nodes.set(groupId(ns), { group: 'nodes', data: { id: groupId(ns), label: ns, namespace: ns, members: 0 },
          classes: 'namespace' + (state.collapsed.has(ns) ? ' collapsed' : '') });
      }
      nodes.get(groupId(ns)).data.members += 1;
      if (state.collapsed.has(ns)) { shownAs.set(id, groupId(ns)); return; }
      shownAs.set(id, id);
      var nodeMarks = marks.nodes.get(id) || [];
      nodes.set(id, { group: 'nodes', data: {
        id: id, parent: groupId(ns), label: nodeLabel(s), kind: s.kind, health: s.health,
        shape: SHAPES[s.kind] || 'rectangle', colour: HEALTH_COLOURS[s.health] || HEALTH_COLOURS.unknown },
        classes: nodeMarks.join(' ') });
    });
    nodes.forEach(function (n) {
      if (n.classes.indexOf('collapsed') >= 0) n.data.label = n.data.namespace + ' (' + n.data.members + ')';
    });
    var edges = new Map();
    topology.edges.forEach(function (e) {
      var from = shownAs.get(e.source), to = shownAs.get(e.destination);
      // Calls inside one collapsed namespace stay inside it.
      if (!from || !to || (from === to && from !== e.source)) return;
      var id = 'e:' + pairKey(from, to);
      var agg = edges.get(id);
      if (!agg) {
        agg = { group: 'edges', data: { id: id, source: from, target: to, connections: 0, failed: 0, udp: true, parts: [] } };
        edges.set(id, agg);
      }
      agg.data.connections += e.connections;
      agg.data.failed += e.failed;
      agg.data.udp = agg.data.udp && e.protocol === 'udp';
      agg.data.parts.push(e);
    });
    edges.forEach(function (agg) {
      var d = agg.data;
      d.width = Math.min(10, 1 + 1.5 * Math.log10(1 + d.connections));
      var classes = [];
      if (d.failed > 0) classes.push('failed');
      if (d.udp) classes.push('udp');
      d.parts.forEach(function (p) {
        var m = marks.edges.get(pairKey(p.source, p.destination));
        if (m) m.marks.forEach(function (mark) { if (classes.indexOf(mark) < 0) classes.push(mark); });
      });
      agg.classes = classes.join(' ');
    });
    ghosts(nodes, edges, shownAs);
    return { nodes: nodes, edges: edges };
  }

  // What the baseline had and this map lacks, drawn faded beside the rest.
  function ghosts(nodes, edges, shownAs) {
    marks.removedServices.forEach(function (id) {
      if (nodes.has(id)) return;
      nodes.set(id, { group: 'nodes', data: { id: id, label: id + '\n(gone)', shape: 'rectangle', colour: '#eceff1' },
        classes: 'removed' });
      shownAs.set(id, id);
    });
    marks.removedDependencies.forEach(function (d) {
      var from = shownAs.get(d.source), to = shownAs.get(d.destination);
      if (!from || !to) return;
      var key = 'gone:' + pairKey(from, to);
      edges.set(key, { group: 'edges', data: { id: key, source: from, target: to, connections: d.connections,
        failed: 0, width: 1.5, parts: [] }, classes: 'removed' });
    });
  }

  function nodeLabel(s) {
    var detail = s.type + (s.version ? ' ' + s.version : '');
    var name = s.dns_name ? s.dns_name + ' (' + s.name + ')' : s.name;
    return name + '\n' + detail;
  }

  // Brings the drawing to `elements`, keeping what stays where it is; lays out again
  // only when nodes were added.
  function apply(elements) {
    var added = 0;
    cy.batch(function () {
      cy.elements().forEach(function (el) {
        var keep = (el.isNode() ? elements.nodes : elements.edges).get(el.id());
        if (!keep || (el.isNode() && (el.data('parent') || null) !== (keep.data.parent || null))) {
          if (el.isNode()) state.positions.set(el.id(), el.position());
          cy.remove(el);
        }
      });
      elements.nodes.forEach(function (n) {
        var el = cy.getElementById(n.data.id);
        if (el.length) { el.data(n.data); el.classes(n.classes); return; }
        var position = state.positions.get(n.data.id);
        cy.add(Object.assign({}, n, position ? { position: Object.assign({}, position) } : {}));
        if (!position) added += 1;
      });
      elements.edges.forEach(function (e) {
        var el = cy.getElementById(e.data.id);
        if (el.length) { el.data(e.data); el.classes(e.classes); return; }
        cy.add(e);
      });
    });
    if (added > 0) layout();
    highlightSearch();
  }

  function layout() {
    var started = performance.now();
    var options = { name: 'fcose', animate: false, randomize: state.firstLayout, nodeDimensionsIncludeLabels: true,
      packComponents: true, idealEdgeLength: 90, nodeRepulsion: 6000, fit: state.firstLayout };
    cy.layout(options).run();
    state.firstLayout = false;
    cy.nodes().forEach(function (n) { state.positions.set(n.id(), Object.assign({}, n.position())); });
    document.body.dataset.layoutMs = String(Math.round(performance.now() - started));
  }

  function render() {
    var topology = currentTopology();
    if (!topology) return;
    apply(elementsOf(topology));
    renderLists(topology);
    $('window').textContent = topology.window.start + ' to ' + topology.window.end;
    state.updates += 1;
    document.body.dataset.updates = String(state.updates);
    document.body.dataset.ready = '1';
  }

  function cell(row, text, number) {
    var td = document.createElement('td');
    td.textContent = text;
    if (number) td.className = 'number';
    row.appendChild(td);
  }

  // The same map as text: every service and dependency of the shown topology.
  function renderLists(topology) {
    var services = $('services').tBodies[0], dependencies = $('dependencies').tBodies[0];
    services.textContent = '';
    dependencies.textContent = '';
    var ids = Object.keys(topology.services).sort();
    ids.forEach(function (id) {
      var s = topology.services[id];
      var row = services.insertRow();
      row.dataset.id = id;
      row.dataset.search = searchText(id, s);
      [s.name, namespaceOf(s), s.kind, s.type, s.version || '', s.health].forEach(function (t) { cell(row, t); });
      cell(row, s.endpoints.ready + '/' + s.endpoints.total, true);
    });
    topology.edges.forEach(function (e) {
      var row = dependencies.insertRow();
      row.dataset.search = (e.source + ' ' + e.destination).toLowerCase();
      var m = marks.edges.get(pairKey(e.source, e.destination));
      [e.source, e.destination, e.protocol + '/' + e.port].forEach(function (t) { cell(row, t); });
      [e.connections, e.failed, e.bytes_sent, e.bytes_received].forEach(function (n) { cell(row, n.toLocaleString('en'), true); });
      cell(row, m ? m.marks.join(', ') : '');
    });
    $('service-count').textContent = '(' + ids.length + ')';
    $('dependency-count').textContent = '(' + topology.edges.length + ')';
    filterRows();
  }

  function searchText(id, s) {
    return [id, s.type, s.version || '', s.dns_name || ''].join(' ').toLowerCase();
  }

  function filterRows() {
    var q = state.search;
    document.querySelectorAll('#lists tbody tr').forEach(function (row) {
      row.classList.toggle('hidden-row', q !== '' && row.dataset.search.indexOf(q) < 0);
    });
  }

  function highlightSearch() {
    var q = state.search;
    cy.batch(function () {
      cy.elements().removeClass('match dimmed');
      var topology = currentTopology();
      if (q === '' || !topology) return;
      cy.nodes().forEach(function (n) {
        var s = topology.services[n.id()];
        var hit = s ? searchText(n.id(), s).indexOf(q) >= 0 : n.data('label').toLowerCase().indexOf(q) >= 0;
        n.addClass(hit ? 'match' : 'dimmed');
      });
      cy.edges().addClass('dimmed');
    });
  }

  // Details of a clicked node or edge, as a definition list.
  function showDetails(title, rows) {
    var box = $('details');
    box.textContent = '';
    var h = document.createElement('h2');
    h.textContent = title;
    box.appendChild(h);
    var dl = document.createElement('dl');
    rows.forEach(function (r) {
      if (r[1] === undefined || r[1] === null || r[1] === '') return;
      var dt = document.createElement('dt'), dd = document.createElement('dd');
      dt.textContent = r[0];
      dd.textContent = String(r[1]);
      dl.appendChild(dt);
      dl.appendChild(dd);
    });
    box.appendChild(dl);
  }

  function serviceDetails(id) {
    var s = currentTopology().services[id];
    if (!s) { showDetails(id, [['status', 'only in the baseline']]); return; }
    var labels = Object.keys(s.labels || {}).map(function (k) { return k + '=' + s.labels[k]; }).join(', ');
    showDetails(id, [['kind', s.kind], ['type', s.type], ['version', s.version], ['health', s.health],
      ['endpoints', s.endpoints.ready + ' ready of ' + s.endpoints.total], ['dns name', s.dns_name],
      ['calls', s.dependencies.join(', ')], ['called by', s.dependents.join(', ')], ['labels', labels],
      ['marks', (marks.nodes.get(id) || []).join(', ')]]);
  }

  // ["2 refused", "1 timed out"]: counts by cause, where the topology gives them (a
  // frame of the time slider does not).
  function causes(counts) {
    return Object.keys(counts || {}).map(function (k) { return counts[k] + ' ' + k.replace('_', ' '); });
  }

  // "3 (2 refused, 1 timed out)": failed attempts with their causes.
  function failedText(p) {
    var c = causes(p.failures);
    return c.length ? p.failed + ' (' + c.join(', ') + ')' : p.failed;
  }

  function edgeDetails(edge) {
    var rows = [];
    edge.data('parts').forEach(function (p) {
      rows.push([p.source + ' -> ' + p.destination, p.protocol + '/' + p.port]);
      var ingress = (p.ingress || []).map(function (r) { return r.ingress + ' ' + r.host + r.path; });
      var procs = p.processes || {};
      rows.push(['serves ingress', ingress.join(', ')], ['client processes', (procs.client || []).join(', ')],
        ['server processes', (procs.server || []).join(', ')]);
      rows.push(['connections', p.connections], ['failed', failedText(p)], ['aborted', causes(p.aborted).join(', ')],
        ['retransmits', p.retransmits],
        ['bytes sent', p.bytes_sent], ['bytes received', p.bytes_received], ['first seen', p.first_seen],
        ['last seen', p.last_seen]);
      var m = marks.edges.get(pairKey(p.source, p.destination));
      if (m) rows.push(['marks', m.marks.join(', ')], ['notes', m.notes.join('; ')]);
    });
    if (edge.hasClass('removed')) rows.push(['status', 'only in the baseline'], ['connections then', edge.data('connections')]);
    showDetails(edge.source().id() + ' -> ' + edge.target().id(), rows);
  }

  cy.on('tap', 'node', function (evt) {
    var n = evt.target;
    if (n.hasClass('namespace')) { toggleCollapsed(n.data('namespace')); return; }
    serviceDetails(n.id());
  });
  cy.on('tap', 'edge', function (evt) { edgeDetails(evt.target); });

  function toggleCollapsed(ns) {
    if (state.collapsed.has(ns)) state.collapsed.delete(ns); else state.collapsed.add(ns);
    render();
  }

  function checkbox(parent, text, checked, onChange) {
    var label = document.createElement('label');
    var input = document.createElement('input');
    input.type = 'checkbox';
    input.checked = checked;
    input.addEventListener('change', function () { onChange(input.checked); });
    label.appendChild(input);
    label.appendChild(document.createTextNode(' ' + text));
    parent.appendChild(label);
  }

  function namespacesOf(topology) {
    var set = new Set();
    Object.keys(topology.services).forEach(function (id) { set.add(namespaceOf(topology.services[id])); });
    return Array.from(set).sort();
  }

  var listedNamespaces = new Set();
  function updateNamespaceFilter(topology) {
    var box = $('namespace-filter');
    namespacesOf(topology).forEach(function (ns) {
      if (listedNamespaces.has(ns)) return;
      listedNamespaces.add(ns);
      checkbox(box, ns, true, function (on) {
        if (on) state.hiddenNamespaces.delete(ns); else state.hiddenNamespaces.add(ns);
        render();
      });
    });
  }

  KINDS.forEach(function (kind) {
    checkbox($('kind-filter'), kind === 'external' ? 'externals' : kind + 's', true, function (on) {
      if (on) state.hiddenKinds.delete(kind); else state.hiddenKinds.add(kind);
      render();
    });
  });
  $('search').addEventListener('input', function (e) {
    state.search = e.target.value.trim().toLowerCase();
    highlightSearch();
    filterRows();
  });
  $('fit').addEventListener('click', function () { cy.fit(undefined, 30); });
  $('collapse-all').addEventListener('click', function () {
    if (!state.topology) return;
    namespacesOf(state.topology).forEach(function (ns) { state.collapsed.add(ns); });
    render();
  });
  $('expand-all').addEventListener('click', function () { state.collapsed.clear(); render(); });

  // The time slider: frame i is the map as the engine had it at that frame's time.
  function setupTimeline() {
    if (data.frames.length < 2) return;
    var slider = $('frame');
    $('timeline').hidden = false;
    slider.max = String(data.frames.length - 1);
    slider.value = slider.max;
    var showFrame = function () {
      state.frame = Number(slider.value);
      $('frame-time').textContent = data.frames[state.frame].time;
      render();
    };
    slider.addEventListener('input', showFrame);
    var timer = null;
    $('play').addEventListener('click', function () {
      if (timer) { clearInterval(timer); timer = null; $('play').textContent = 'Play'; return; }
      slider.value = '0';
      showFrame();
      $('play').textContent = 'Pause';
      timer = setInterval(function () {
        if (Number(slider.value) >= data.frames.length - 1) { clearInterval(timer); timer = null; $('play').textContent = 'Play'; return; }
        slider.value = String(Number(slider.value) + 1);
        showFrame();
      }, 700);
    });
    $('frame-time').textContent = data.frames[state.frame].time;
  }

  function setupFindings() {
    if (!data.report_text) return;
    $('findings').hidden = false;
    $('report').textContent = data.report_text;
  }

  // Live: the page polls the agent's map and statistics; nothing reloads.
  function setupLive() {
    var live = data.live;
    var poll = function () {
      fetch(live.map, { cache: 'no-store' }).then(function (r) {
        if (!r.ok) throw new Error('GET ' + live.map + ': ' + r.status);
        return r.json();
      }).then(function (topology) {
        // Until the agent's first map, /map is an empty object.
        if (!topology.services) return;
        if (!state.topology) collapseIfLarge(topology);
        state.topology = topology;
        updateNamespaceFilter(topology);
        render();
      }).catch(showAgentError);
      fetch(live.stats, { cache: 'no-store' }).then(function (r) { return r.json(); }).then(showAgent).catch(showAgentError);
    };
    poll();
    setInterval(poll, live.interval_ms);
  }

  function showAgent(stats) {
    var box = $('agent');
    box.hidden = false;
    var k = stats.kernel || {};
    var parts = ['events ' + ((stats.events || {}).conn || 0).toLocaleString('en'),
      'dropped ' + (k.ringbuf_drops || 0), 'evicted ' + ((k.conn_evictions || 0) + (k.udp_flow_evictions || 0)),
      'at ' + (stats.clock || '-')];
    box.textContent = 'agent: ' + parts.join(' | ');
  }

  function showAgentError(error) {
    var box = $('agent');
    box.hidden = false;
    box.textContent = 'agent unreachable: ' + error.message;
  }

  function graphStyle() {
    return [
      { selector: 'node', style: { label: 'data(label)', 'text-wrap': 'wrap', 'font-size': 10, 'text-valign': 'bottom',
        'text-margin-y': 3, 'text-background-color': '#fff', 'text-background-opacity': 0.7, shape: 'data(shape)', 'background-color': 'data(colour)', width: 26, height: 26,
        'border-width': 1, 'border-color': '#37474f' } },
      { selector: 'node.namespace', style: { shape: 'round-rectangle', 'background-color': '#eef2f5',
        'background-opacity': 0.6, 'border-color': '#b0bec5', 'text-valign': 'top', 'font-size': 12,
        'font-weight': 'bold', padding: 12 } },
      { selector: 'node.namespace.collapsed', style: { width: 60, height: 40, 'background-color': '#cfd8dc',
        'text-valign': 'center' } },
      { selector: 'node.spof', style: { 'border-width': 5, 'border-color': '#e65100' } },
      { selector: 'node.cycle', style: { 'border-width': 3, 'border-color': '#8e24aa' } },
      { selector: 'node.added', style: { 'border-width': 3, 'border-color': '#00897b' } },
      { selector: 'node.changed', style: { 'border-style': 'double', 'border-width': 4 } },
      { selector: 'node.removed', style: { opacity: 0.5, 'border-style': 'dotted' } },
      { selector: 'edge', style: { width: 'data(width)', 'curve-style': 'bezier', 'target-arrow-shape': 'triangle',
        'line-color': '#7a8690', 'target-arrow-color': '#7a8690', 'arrow-scale': 0.9 } },
      { selector: 'edge.udp', style: { 'line-style': 'dashed' } },
      { selector: 'edge.failed', style: { 'line-color': '#c62828', 'target-arrow-color': '#c62828' } },
      { selector: 'edge.cycle, edge.violation', style: { 'line-color': '#8e24aa', 'target-arrow-color': '#8e24aa' } },
      { selector: 'edge.added', style: { 'line-color': '#00897b', 'target-arrow-color': '#00897b' } },
      { selector: 'edge.shift', style: { 'line-color': '#ef6c00', 'target-arrow-color': '#ef6c00' } },
      { selector: 'edge.removed', style: { 'line-style': 'dotted', 'line-color': '#b0bec5', 'target-arrow-color': '#b0bec5' } },
      { selector: '.dimmed', style: { opacity: 0.2 } },
      { selector: 'node.match', style: { 'border-width': 4, 'border-color': '#1565c0' } },
      { selector: ':selected', style: { 'overlay-opacity': 0.15, 'overlay-color': '#1565c0' } },
    ];
  }

  function collapseIfLarge(topology) {
    if (Object.keys(topology.services).length <= COLLAPSE_ABOVE) return;
    namespacesOf(topology).forEach(function (ns) { state.collapsed.add(ns); });
    document.body.dataset.collapsedAtOpen = '1';
  }

  // For scripting from the browser's console (and the page's tests): the Cytoscape
  // instance and the page's state.
  window.smapMap = { cy: cy, state: state };

  setupFindings();
  if (data.live) {
    setupLive();
  } else {
    collapseIfLarge(state.topology);
    updateNamespaceFilter(state.topology);
    setupTimeline();
    render();
  }
})();
