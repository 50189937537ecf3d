// x0tta6bl4 status page: a plain ES module, no dependencies, no build step.
// Reads the live event stream (/api/v1/events?summary=1) and renders it; the page is read-only.

// ---------------------------------------------------------------------------------------------
// Strings. Every visible text lives here, in English, Spanish and Russian.

const STRINGS = {
  en: {
    title: "x0tta6bl4 status",
    skip: "Skip to content",
    updated: "Updated",
    language: "Language",
    connConnecting: "Connecting…",
    connLive: "Live",
    connReconnecting: "Reconnecting…",
    connUnsupported: "This browser cannot receive live updates.",
    connToken: "This appliance needs its API token to show anything.",
    tokenLabel: "API token",
    tokenSubmit: "Use",
    statusHeading: "Overall status",
    waiting: "Waiting for data…",
    state_healthy: "Healthy",
    state_degraded: "Degraded",
    state_unhealthy: "Unhealthy",
    state_unknown: "Unknown",
    allHealthy: "All components are healthy.",
    fallbackTitle: "Fallback mode",
    fallbackText:
      "eBPF is not running; totals come from the kernel's interface counters and there are no per-flow data.",
    fallbackReason: "Reason: {reason}",
    interfacesHeading: "Interfaces",
    interfacesHint: "Rates over the last 5 minutes.",
    legendRx: "in (rx)",
    legendTx: "out (tx)",
    noInterfaces: "No interfaces are watched.",
    source_ebpf: "eBPF",
    source_fallback: "kernel counters",
    in: "In",
    out: "Out",
    chartBits: "Bits per second",
    chartPackets: "Packets per second",
    chartPeak: "peak {value}",
    chartLabel: "{iface}, {metric}, last 5 minutes: in {rx}, out {tx}",
    pps: "pkt/s",
    flowsHeading: "Top flows",
    filterLabel: "Filter",
    filterPlaceholder: "interface, address, port or protocol",
    flowsCaption: "Top 50 flows by bytes",
    colIface: "Interface",
    colDir: "Direction",
    colProto: "Protocol",
    colSrc: "Source",
    colDst: "Destination",
    colRate: "Rate",
    colPackets: "Packets",
    colBytes: "Bytes",
    colDrops: "Drops",
    colRetransmits: "Retransmits",
    dir_rx: "in",
    dir_tx: "out",
    noFlows: "No flows.",
    noMatch: "No flows match the filter.",
    flowCount: "{shown} of {total} shown",
    meshHeading: "Mesh peers",
    peersCaption: "Peers of this node",
    colName: "Name",
    colState: "State",
    colRtt: "RTT (ms)",
    colLoss: "Loss (%)",
    colIn: "In",
    colOut: "Out",
    peer_alive: "alive",
    peer_suspect: "suspect",
    peer_dead: "dead",
    peer_left: "left",
    since: "since {time}",
    noPeers: "No peers.",
    eventsHeading: "Recent events",
    noEvents: "No events yet.",
    ev_flow: "flow",
    ev_health: "health",
    ev_attach: "attach",
    ev_detach: "detach",
    ev_peer: "peer",
    ev_mode: "mode",
    ev_reload: "reload",
    ev_gap: "gap",
    ev_reset: "reset",
    evFlow: "New {proto} flow {src} → {dst} on {iface}",
    evHealth: "{component}: {from} → {to}",
    evHealthNew: "{component}: {to}",
    evAttach: "Attached to {iface}",
    evDetach: "Detached from {iface}",
    evPeer: "Peer {name}: {from} → {to}",
    evPeerNew: "Peer {name}: {to}",
    evModeEbpf: "Switched to eBPF mode",
    evModeFallback: "Switched to fallback mode",
    evReloadOk: "Configuration reloaded",
    evReloadFail: "Configuration reload failed",
    evGap: "Some events were missed; this list may be incomplete",
    evGapLost: "{n} events were missed (this page read too slowly)",
    evReset: "The appliance restarted; events start afresh",
    evOther: "Event",
    mapekHeading: "MAPE-K decisions",
    mapekOff: "MAPE-K is switched off (mapek.enabled).",
    mode_observe: "observe",
    mode_enforce: "enforce",
    modeHint_observe: "plans are shown, nothing is executed",
    modeHint_enforce: "actions are executed until they expire",
    mapekActions: "Live actions",
    colAction: "Action",
    colTarget: "Target",
    colLeft: "Time left",
    noActions: "No live actions.",
    mapekRevoke: "revoke: DELETE /api/v1/mapek/actions/<id> with the API token",
    mapekDecisions: "Latest decisions",
    noDecisions: "No decisions yet.",
    evidence: "{metric}: {value} {unit} (threshold {threshold}; {baseline}; window {window})",
    baseline: "baseline median {median} over {samples} samples",
    learning: "baseline learning",
    fixed: "fixed threshold",
    sym_source_flood: "source flood",
    sym_syn_flood: "SYN flood",
    sym_port_scan: "port scan",
    sym_drop_rise: "rise in drops",
    sym_mesh_degraded: "mesh degraded",
    sym_flow_table_pressure: "flow table pressure",
    sym_ringbuf_loss: "ring buffer loss",
    st_executed: "executed",
    st_observed: "observed",
    st_reported: "reported",
    st_skipped: "skipped",
    st_failed: "failed",
    st_active: "active",
    st_expired: "expired",
    st_revoked: "revoked",
    healthHeading: "Health components",
    componentsCaption: "State of each component",
    colComponent: "Component",
    colReason: "Reason",
    colSince: "Since",
    noComponents: "No components reported.",
    dropsHeading: "Drops by reason",
    dropsCaption: "Packets dropped by the kernel",
    colCount: "Count",
    noDrops: "No drops recorded.",
  },
  es: {
    title: "Estado de x0tta6bl4",
    skip: "Saltar al contenido",
    updated: "Actualizado",
    language: "Idioma",
    connConnecting: "Conectando…",
    connLive: "En directo",
    connReconnecting: "Reconectando…",
    connUnsupported: "Este navegador no puede recibir actualizaciones en directo.",
    connToken: "Este equipo necesita su token de la API para mostrar algo.",
    tokenLabel: "Token de la API",
    tokenSubmit: "Usar",
    statusHeading: "Estado general",
    waiting: "Esperando datos…",
    state_healthy: "Correcto",
    state_degraded: "Degradado",
    state_unhealthy: "Con fallos",
    state_unknown: "Desconocido",
    allHealthy: "Todos los componentes funcionan correctamente.",
    fallbackTitle: "Modo de respaldo",
    fallbackText:
      "eBPF no está en marcha; los totales vienen de los contadores de interfaz del núcleo y no hay datos por flujo.",
    fallbackReason: "Motivo: {reason}",
    interfacesHeading: "Interfaces",
    interfacesHint: "Tasas de los últimos 5 minutos.",
    legendRx: "entrada (rx)",
    legendTx: "salida (tx)",
    noInterfaces: "No se vigila ninguna interfaz.",
    source_ebpf: "eBPF",
    source_fallback: "contadores del núcleo",
    in: "Entrada",
    out: "Salida",
    chartBits: "Bits por segundo",
    chartPackets: "Paquetes por segundo",
    chartPeak: "máximo {value}",
    chartLabel: "{iface}, {metric}, últimos 5 minutos: entrada {rx}, salida {tx}",
    pps: "paq/s",
    flowsHeading: "Flujos principales",
    filterLabel: "Filtro",
    filterPlaceholder: "interfaz, dirección, puerto o protocolo",
    flowsCaption: "Los 50 flujos con más bytes",
    colIface: "Interfaz",
    colDir: "Sentido",
    colProto: "Protocolo",
    colSrc: "Origen",
    colDst: "Destino",
    colRate: "Tasa",
    colPackets: "Paquetes",
    colBytes: "Bytes",
    colDrops: "Descartes",
    colRetransmits: "Retransmisiones",
    dir_rx: "entrada",
    dir_tx: "salida",
    noFlows: "No hay flujos.",
    noMatch: "Ningún flujo coincide con el filtro.",
    flowCount: "{shown} de {total} visibles",
    meshHeading: "Nodos de la malla",
    peersCaption: "Nodos vecinos de este nodo",
    colName: "Nombre",
    colState: "Estado",
    colRtt: "RTT (ms)",
    colLoss: "Pérdida (%)",
    colIn: "Recibido",
    colOut: "Enviado",
    peer_alive: "activo",
    peer_suspect: "sospechoso",
    peer_dead: "caído",
    peer_left: "retirado",
    since: "desde {time}",
    noPeers: "No hay nodos vecinos.",
    eventsHeading: "Eventos recientes",
    noEvents: "Todavía no hay eventos.",
    ev_flow: "flujo",
    ev_health: "salud",
    ev_attach: "conexión",
    ev_detach: "desconexión",
    ev_peer: "nodo",
    ev_mode: "modo",
    ev_reload: "recarga",
    ev_gap: "hueco",
    ev_reset: "reinicio",
    evFlow: "Nuevo flujo {proto} {src} → {dst} en {iface}",
    evHealth: "{component}: {from} → {to}",
    evHealthNew: "{component}: {to}",
    evAttach: "Conectado a {iface}",
    evDetach: "Desconectado de {iface}",
    evPeer: "Nodo {name}: {from} → {to}",
    evPeerNew: "Nodo {name}: {to}",
    evModeEbpf: "Cambio a modo eBPF",
    evModeFallback: "Cambio a modo de respaldo",
    evReloadOk: "Configuración recargada",
    evReloadFail: "Error al recargar la configuración",
    evGap: "Se perdieron algunos eventos; la lista puede estar incompleta",
    evGapLost: "Se perdieron {n} eventos (esta página leía demasiado despacio)",
    evReset: "El equipo se reinició; los eventos empiezan de nuevo",
    evOther: "Evento",
    mapekHeading: "Decisiones MAPE-K",
    mapekOff: "MAPE-K está desactivado (mapek.enabled).",
    mode_observe: "observación",
    mode_enforce: "ejecución",
    modeHint_observe: "se muestran los planes, no se ejecuta nada",
    modeHint_enforce: "las acciones se ejecutan hasta que caducan",
    mapekActions: "Acciones vigentes",
    colAction: "Acción",
    colTarget: "Objetivo",
    colLeft: "Tiempo restante",
    noActions: "No hay acciones vigentes.",
    mapekRevoke: "revocar: DELETE /api/v1/mapek/actions/<id> con el token de la API",
    mapekDecisions: "Últimas decisiones",
    noDecisions: "Todavía no hay decisiones.",
    evidence: "{metric}: {value} {unit} (umbral {threshold}; {baseline}; ventana {window})",
    baseline: "mediana de referencia {median} en {samples} muestras",
    learning: "referencia en aprendizaje",
    fixed: "umbral fijo",
    sym_source_flood: "inundación desde un origen",
    sym_syn_flood: "inundación SYN",
    sym_port_scan: "escaneo de puertos",
    sym_drop_rise: "aumento de descartes",
    sym_mesh_degraded: "malla degradada",
    sym_flow_table_pressure: "tabla de flujos casi llena",
    sym_ringbuf_loss: "pérdidas en el búfer circular",
    st_executed: "ejecutada",
    st_observed: "observada",
    st_reported: "solo informada",
    st_skipped: "omitida",
    st_failed: "fallida",
    st_active: "activa",
    st_expired: "caducada",
    st_revoked: "revocada",
    healthHeading: "Componentes",
    componentsCaption: "Estado de cada componente",
    colComponent: "Componente",
    colReason: "Motivo",
    colSince: "Desde",
    noComponents: "No hay componentes.",
    dropsHeading: "Descartes por motivo",
    dropsCaption: "Paquetes descartados por el núcleo",
    colCount: "Cantidad",
    noDrops: "No se han registrado descartes.",
  },
  ru: {
    title: "Состояние x0tta6bl4",
    skip: "Перейти к содержимому",
    updated: "Обновлено",
    language: "Язык",
    connConnecting: "Подключение…",
    connLive: "В эфире",
    connReconnecting: "Переподключение…",
    connUnsupported: "Этот браузер не может получать обновления в реальном времени.",
    connToken: "Чтобы что-то показать, этой машине нужен её токен API.",
    tokenLabel: "Токен API",
    tokenSubmit: "Применить",
    statusHeading: "Общее состояние",
    waiting: "Ожидание данных…",
    state_healthy: "Исправно",
    state_degraded: "Работает с ограничениями",
    state_unhealthy: "Неисправно",
    state_unknown: "Неизвестно",
    allHealthy: "Все компоненты исправны.",
    fallbackTitle: "Резервный режим",
    fallbackText:
      "eBPF не работает; итоги берутся из счётчиков интерфейсов ядра, данных по потокам нет.",
    fallbackReason: "Причина: {reason}",
    interfacesHeading: "Интерфейсы",
    interfacesHint: "Скорости за последние 5 минут.",
    legendRx: "вход (rx)",
    legendTx: "выход (tx)",
    noInterfaces: "Нет отслеживаемых интерфейсов.",
    source_ebpf: "eBPF",
    source_fallback: "счётчики ядра",
    in: "Вход",
    out: "Выход",
    chartBits: "Бит в секунду",
    chartPackets: "Пакетов в секунду",
    chartPeak: "максимум {value}",
    chartLabel: "{iface}, {metric}, последние 5 минут: вход {rx}, выход {tx}",
    pps: "пак/с",
    flowsHeading: "Крупнейшие потоки",
    filterLabel: "Фильтр",
    filterPlaceholder: "интерфейс, адрес, порт или протокол",
    flowsCaption: "50 крупнейших потоков по байтам",
    colIface: "Интерфейс",
    colDir: "Направление",
    colProto: "Протокол",
    colSrc: "Источник",
    colDst: "Назначение",
    colRate: "Скорость",
    colPackets: "Пакеты",
    colBytes: "Байты",
    colDrops: "Отброшено",
    colRetransmits: "Повторы",
    dir_rx: "вход",
    dir_tx: "выход",
    noFlows: "Потоков нет.",
    noMatch: "Нет потоков, подходящих под фильтр.",
    flowCount: "показано {shown} из {total}",
    meshHeading: "Узлы сети",
    peersCaption: "Соседние узлы",
    colName: "Имя",
    colState: "Состояние",
    colRtt: "RTT (мс)",
    colLoss: "Потери (%)",
    colIn: "Получено",
    colOut: "Отправлено",
    peer_alive: "доступен",
    peer_suspect: "под подозрением",
    peer_dead: "недоступен",
    peer_left: "вышел",
    since: "с {time}",
    noPeers: "Соседних узлов нет.",
    eventsHeading: "Последние события",
    noEvents: "Событий пока нет.",
    ev_flow: "поток",
    ev_health: "состояние",
    ev_attach: "подключение",
    ev_detach: "отключение",
    ev_peer: "узел",
    ev_mode: "режим",
    ev_reload: "перезагрузка",
    ev_gap: "пропуск",
    ev_reset: "сброс",
    evFlow: "Новый поток {proto} {src} → {dst} на {iface}",
    evHealth: "{component}: {from} → {to}",
    evHealthNew: "{component}: {to}",
    evAttach: "Подключено к {iface}",
    evDetach: "Отключено от {iface}",
    evPeer: "Узел {name}: {from} → {to}",
    evPeerNew: "Узел {name}: {to}",
    evModeEbpf: "Включён режим eBPF",
    evModeFallback: "Включён резервный режим",
    evReloadOk: "Конфигурация перезагружена",
    evReloadFail: "Не удалось перезагрузить конфигурацию",
    evGap: "Часть событий пропущена; список может быть неполным",
    evGapLost: "Пропущено событий: {n} (страница читала слишком медленно)",
    evReset: "Машина перезапустилась; события начинаются заново",
    evOther: "Событие",
    mapekHeading: "Решения MAPE-K",
    mapekOff: "MAPE-K отключён (mapek.enabled).",
    mode_observe: "наблюдение",
    mode_enforce: "применение",
    modeHint_observe: "планы показываются, но ничего не выполняется",
    modeHint_enforce: "действия выполняются до истечения срока",
    mapekActions: "Текущие действия",
    colAction: "Действие",
    colTarget: "Цель",
    colLeft: "Осталось",
    noActions: "Текущих действий нет.",
    mapekRevoke: "отмена: DELETE /api/v1/mapek/actions/<id> с токеном API",
    mapekDecisions: "Последние решения",
    noDecisions: "Решений пока нет.",
    evidence: "{metric}: {value} {unit} (порог {threshold}; {baseline}; окно {window})",
    baseline: "базовая медиана {median} по {samples} замерам",
    learning: "база ещё обучается",
    fixed: "фиксированный порог",
    sym_source_flood: "флуд с источника",
    sym_syn_flood: "SYN-флуд",
    sym_port_scan: "сканирование портов",
    sym_drop_rise: "рост отбрасываний",
    sym_mesh_degraded: "деградация сети узлов",
    sym_flow_table_pressure: "переполнение таблицы потоков",
    sym_ringbuf_loss: "потери в кольцевом буфере",
    st_executed: "выполнено",
    st_observed: "наблюдение",
    st_reported: "отмечено",
    st_skipped: "пропущено",
    st_failed: "ошибка",
    st_active: "действует",
    st_expired: "истекло",
    st_revoked: "отменено",
    healthHeading: "Компоненты",
    componentsCaption: "Состояние каждого компонента",
    colComponent: "Компонент",
    colReason: "Причина",
    colSince: "С момента",
    noComponents: "Нет данных о компонентах.",
    dropsHeading: "Отброшенные пакеты по причинам",
    dropsCaption: "Пакеты, отброшенные ядром",
    colCount: "Количество",
    noDrops: "Отброшенных пакетов нет.",
  },
};

const LANGS = Object.keys(STRINGS);
const LANG_KEY = "x0tta6bl4.lang";
const WINDOW_MS = 5 * 60 * 1000;
const MAX_EVENTS = 50;
const GAP_MS = 10_000; // a longer pause between two samples breaks the chart line
const CHART_W = 300;
const CHART_H = 60;
const SVG_NS = "http://www.w3.org/2000/svg";

let lang = "en";

function t(key, vars) {
  const table = STRINGS[lang] ?? STRINGS.en;
  let s = table[key] ?? STRINGS.en[key] ?? key;
  if (vars) s = s.replace(/\{(\w+)\}/g, (m, k) => (k in vars ? String(vars[k]) : m));
  return s;
}

// ---------------------------------------------------------------------------------------------
// Small, forgiving readers: the stream is trusted, but the page must not break on odd fields.

const isObj = (v) => v !== null && typeof v === "object" && !Array.isArray(v);
const obj = (v) => (isObj(v) ? v : {});
const arr = (v) => (Array.isArray(v) ? v : []);
const str = (v, d = "") => (typeof v === "string" ? v : typeof v === "number" ? String(v) : d);
const num = (v) => (typeof v === "number" && Number.isFinite(v) ? v : null);

function toDate(v) {
  if (typeof v !== "number" && typeof v !== "string") return null;
  if (v === "") return null;
  const d = new Date(v);
  return Number.isNaN(d.getTime()) ? null : d;
}

// ---------------------------------------------------------------------------------------------
// Formatting.

const nfCache = new Map();
function nf(digits) {
  const k = `${lang}/${digits}`;
  let f = nfCache.get(k);
  if (!f) {
    f = new Intl.NumberFormat(lang, { maximumFractionDigits: digits, minimumFractionDigits: 0 });
    nfCache.set(k, f);
  }
  return f;
}

const PREFIXES = ["", "k", "M", "G", "T", "P", "E"];

/** 1234567 → "1.23 M" + unit, SI (powers of 1000). */
function si(v, unit, sep = " ") {
  const n = num(v);
  if (n === null) return "—";
  let i = 0;
  let x = Math.abs(n);
  while (x >= 999.5 && i < PREFIXES.length - 1) {
    x /= 1000;
    i++;
  }
  const digits = i === 0 && Number.isInteger(x) ? 0 : x < 10 ? 2 : x < 100 ? 1 : 0;
  return `${n < 0 ? "-" : ""}${nf(digits).format(x)}${sep}${PREFIXES[i]}${unit}`;
}

const fmtBits = (v) => si(v, "b/s");
const fmtPps = (v) => si(v, t("pps"));
const fmtBytes = (v) => si(v, "B");
const fmtInt = (v) => (num(v) === null ? "—" : nf(0).format(v));
/** Kernel signals of a flow: an en dash when the appliance did not measure them. */
const fmtCount = (v) => (num(v) === null ? "–" : nf(0).format(v));
const fmtRttUs = (v) => (num(v) === null ? "–" : nf(v < 10_000 ? 2 : 1).format(v / 1000));

function fmtTime(v) {
  const d = toDate(v);
  if (!d) return "—";
  const sameDay = d.toDateString() === new Date().toDateString();
  const opts = sameDay
    ? { hour: "2-digit", minute: "2-digit", second: "2-digit" }
    : { year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" };
  try {
    return new Intl.DateTimeFormat(lang, opts).format(d);
  } catch {
    return d.toISOString();
  }
}

/** A <time> element for a date given as ISO text or ms; "—" when unknown. */
function timeEl(v, template) {
  const el = document.createElement("time");
  const d = toDate(v);
  if (d) el.dateTime = d.toISOString();
  const text = fmtTime(v);
  el.textContent = template && d ? t(template, { time: text }) : text;
  return el;
}

const PROTOS = { 1: "icmp", 6: "tcp", 17: "udp", 58: "icmpv6" };

function protoName(p) {
  if (typeof p === "string" && p !== "") return p.toLowerCase();
  const n = num(p);
  return n === null ? "?" : PROTOS[n] ?? String(n);
}

function endpoint(addr, port, proto, family) {
  const a = str(addr, "?");
  const n = num(proto);
  const p = num(port);
  if ((n === 6 || n === 17 || proto === "tcp" || proto === "udp") && p !== null) {
    const v6 = family === 6 || family === "ipv6" || a.includes(":");
    return v6 ? `[${a}]:${p}` : `${a}:${p}`;
  }
  return a;
}

// ---------------------------------------------------------------------------------------------
// DOM helpers.

const $ = (id) => document.getElementById(id);

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs ?? {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") el.className = v;
    else if (k === "text") el.textContent = v;
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : String(c));
  }
  return el;
}

function svg(tag, attrs) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs ?? {})) el.setAttribute(k, String(v));
  return el;
}

/** Runs one section's renderer; a failure marks that section (data-error) and spares the rest. */
function guard(sectionId, fn) {
  const section = $(sectionId);
  try {
    fn();
    if (section && section.dataset.error !== undefined) delete section.dataset.error;
  } catch (e) {
    if (section) section.dataset.error = String(e && e.message ? e.message : e);
  }
}

// ---------------------------------------------------------------------------------------------
// State.

const state = {
  summary: null,
  /** name → { samples: [{t, rxBits, txBits, rxPkts, txPkts}], card, parts } */
  ifaces: new Map(),
  /** takenAt of the latest summary: the right edge of every chart. */
  now: null,
  events: [],
  lastId: null,
  conn: "connecting",
  sort: { key: "bytes", dir: "descending" },
  filter: "",
};

// ---------------------------------------------------------------------------------------------
// 1. Status banner.

function renderStatus() {
  const s = state.summary;
  const section = $("status");
  const text = $("status-text");
  const list = $("status-reasons");
  if (!s) {
    section.dataset.status = "unknown";
    text.textContent = t("waiting");
    return;
  }
  const health = obj(s.health);
  const status = ["healthy", "degraded", "unhealthy"].includes(health.status)
    ? health.status
    : "unknown";
  section.dataset.status = status;
  text.removeAttribute("data-i18n");
  text.textContent = t(`state_${status}`);
  const bad = arr(health.components).filter((c) => isObj(c) && c.state !== "healthy");
  list.replaceChildren(
    ...bad.map((c) =>
      h(
        "li",
        { "data-component": str(c.component), "data-state": str(c.state) },
        h("strong", { text: str(c.component, "?") }),
        ` (${t(`state_${stateKey(c.state)}`)}): `,
        str(c.reason, "—"),
      )
    ),
  );
  if (bad.length === 0 && status === "healthy") list.append(h("li", { text: t("allHealthy") }));

  const fb = $("fallback");
  const fallback = s.mode === "fallback";
  fb.hidden = !fallback;
  document.body.dataset.mode = fallback ? "fallback" : str(s.mode, "unknown");
  const reason = str(s.fallbackReason);
  $("fallback-reason").textContent = fallback && reason ? t("fallbackReason", { reason }) : "";
}

function stateKey(v) {
  return ["healthy", "degraded", "unhealthy"].includes(v) ? v : "unknown";
}

// ---------------------------------------------------------------------------------------------
// 2. Interfaces: history and charts.

function recordSamples(s) {
  const now = num(s.takenAt) ?? Date.now();
  const seen = new Set();
  for (const i of arr(s.interfaces)) {
    if (!isObj(i)) continue;
    const name = str(i.name);
    if (!name || seen.has(name)) continue;
    seen.add(name);
    let entry = state.ifaces.get(name);
    if (!entry) {
      entry = { samples: [], card: null, parts: null };
      state.ifaces.set(name, entry);
    }
    const rates = obj(i.rates);
    const rx = obj(rates.rx);
    const tx = obj(rates.tx);
    const sample = {
      t: now,
      rxBits: num(rx.bitsPerSecond),
      txBits: num(tx.bitsPerSecond),
      rxPkts: num(rx.packetsPerSecond),
      txPkts: num(tx.packetsPerSecond),
    };
    const samples = entry.samples;
    // A sample older than the last one (a clock step on the appliance) starts the history over.
    if (samples.length && samples[samples.length - 1].t > now) samples.length = 0;
    if (samples.length && samples[samples.length - 1].t === now) samples.pop();
    samples.push(sample);
    const cut = now - WINDOW_MS;
    let drop = 0;
    while (drop < samples.length && samples[drop].t < cut) drop++;
    if (drop) samples.splice(0, drop);
    entry.source = str(i.source);
  }
  for (const [name, entry] of state.ifaces) {
    if (!seen.has(name)) {
      entry.card?.remove();
      state.ifaces.delete(name);
    }
  }
  state.now = now;
}

function buildCard(name) {
  const mkChart = (metric) => {
    const el = svg("svg", {
      viewBox: `0 0 ${CHART_W} ${CHART_H}`,
      preserveAspectRatio: "none",
      role: "img",
      class: "chart",
      // Exactly one chart per interface answers to svg[data-iface=NAME]: the bits one.
      [metric === "bits" ? "data-iface" : "data-iface-packets"]: name,
      "data-metric": metric,
    });
    for (const frac of [0.25, 0.5, 0.75]) {
      const y = (CHART_H * frac).toFixed(1);
      el.append(svg("line", { x1: 0, x2: CHART_W, y1: y, y2: y, class: "grid" }));
    }
    const rx = svg("path", { d: "", class: "line rx", "data-series": "rx" });
    const tx = svg("path", { d: "", class: "line tx", "data-series": "tx" });
    for (const p of [rx, tx]) p.setAttribute("vector-effect", "non-scaling-stroke");
    el.append(rx, tx);
    const title = h("span", { class: "chart-title" });
    const peak = h("span", { class: "chart-peak" });
    const fig = h("figure", { class: "chart-fig" }, h("figcaption", null, title, " ", peak), el);
    return { fig, svg: el, rx, tx, title, peak };
  };
  const heading = h("h3", null, h("span", { class: "iface-name", text: name }));
  const badge = h("span", { class: "badge" });
  heading.append(" ", badge);
  const cell = (cls) => h("dd", { class: cls });
  const now = {
    inLabel: h("dt"),
    outLabel: h("dt"),
    rxBits: cell("rx-bits"),
    rxPkts: cell("rx-pkts"),
    txBits: cell("tx-bits"),
    txPkts: cell("tx-pkts"),
  };
  const dl = h(
    "dl",
    { class: "now" },
    h("div", null, now.inLabel, now.rxBits, now.rxPkts),
    h("div", null, now.outLabel, now.txBits, now.txPkts),
  );
  const bits = mkChart("bits");
  const pkts = mkChart("packets");
  const card = h("article", { class: "iface", "data-iface-card": name }, heading, dl);
  card.append(bits.fig, pkts.fig);
  return { card, parts: { badge, now, bits, pkts } };
}

function niceMax(v) {
  if (!(v > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 2.5, 5, 10]) if (v <= m * p) return m * p;
  return 10 * p;
}

function pathFor(samples, field, end, max) {
  const start = end - WINDOW_MS;
  let d = "";
  let prevT = null;
  for (const s of samples) {
    const v = s[field];
    if (v === null) {
      prevT = null;
      continue;
    }
    const x = ((s.t - start) / WINDOW_MS) * CHART_W;
    const y = CHART_H - 1 - (Math.max(0, v) / max) * (CHART_H - 2);
    const cmd = prevT === null || s.t - prevT > GAP_MS ? "M" : "L";
    d += `${d ? " " : ""}${cmd}${x.toFixed(1)} ${y.toFixed(1)}`;
    prevT = s.t;
  }
  return d;
}

function drawChart(chart, samples, end, rxField, txField, fmt, metricKey, name) {
  let peak = 0;
  for (const s of samples) peak = Math.max(peak, s[rxField] ?? 0, s[txField] ?? 0);
  const max = niceMax(peak);
  chart.rx.setAttribute("d", pathFor(samples, rxField, end, max));
  chart.tx.setAttribute("d", pathFor(samples, txField, end, max));
  chart.svg.dataset.max = String(max);
  chart.title.textContent = t(metricKey);
  chart.peak.textContent = `(${t("chartPeak", { value: fmt(peak) })})`;
  const last = samples[samples.length - 1] ?? {};
  chart.svg.setAttribute(
    "aria-label",
    t("chartLabel", {
      iface: name,
      metric: t(metricKey),
      rx: fmt(last[rxField]),
      tx: fmt(last[txField]),
    }),
  );
}

function renderInterfaces() {
  const list = $("iface-list");
  $("iface-empty").hidden = state.ifaces.size > 0;
  const end = state.now ?? Date.now();
  let prev = null;
  for (const [name, entry] of state.ifaces) {
    if (!entry.card) Object.assign(entry, buildCard(name));
    // Keep the cards in the order the appliance lists them.
    const want = prev ? prev.nextSibling : list.firstChild;
    if (want !== entry.card) list.insertBefore(entry.card, want);
    prev = entry.card;

    const { badge, now, bits, pkts } = entry.parts;
    const src = entry.source === "fallback" ? "fallback" : "ebpf";
    badge.textContent = t(`source_${src}`);
    badge.dataset.source = src;
    const last = entry.samples[entry.samples.length - 1] ?? {};
    now.inLabel.textContent = t("in");
    now.outLabel.textContent = t("out");
    now.rxBits.textContent = fmtBits(last.rxBits);
    now.rxPkts.textContent = fmtPps(last.rxPkts);
    now.txBits.textContent = fmtBits(last.txBits);
    now.txPkts.textContent = fmtPps(last.txPkts);
    drawChart(bits, entry.samples, end, "rxBits", "txBits", fmtBits, "chartBits", name);
    drawChart(pkts, entry.samples, end, "rxPkts", "txPkts", fmtPps, "chartPackets", name);
  }
}

// ---------------------------------------------------------------------------------------------
// 3. Top flows.

function flowRow(f) {
  const proto = protoName(f.proto);
  const dir = f.direction === "tx" ? "tx" : f.direction === "rx" ? "rx" : str(f.direction, "?");
  const src = endpoint(f.saddr, f.sport, f.proto, f.family);
  const dst = endpoint(f.daddr, f.dport, f.proto, f.family);
  const key = [f.interface, dir, str(f.proto), f.saddr, f.sport, f.daddr, f.dport]
    .map((v) => str(v))
    .join("|");
  const haystack = [
    str(f.interface),
    str(f.saddr),
    str(f.daddr),
    str(f.sport),
    str(f.dport),
    proto,
    str(f.proto),
    src,
    dst,
  ].join(" ").toLowerCase();
  return {
    key,
    haystack,
    iface: str(f.interface, "?"),
    dir,
    proto,
    src,
    dst,
    rate: num(f.bitsPerSecond),
    packets: num(f.packets),
    bytes: num(f.bytes),
    drops: num(f.drops),
    retransmits: num(f.retransmits),
    rtt: num(f.srttUs),
  };
}

const NUMERIC = new Set(["rate", "packets", "bytes", "drops", "retransmits", "rtt"]);
const collator = () => new Intl.Collator(lang, { numeric: true, sensitivity: "base" });

function renderFlows() {
  const s = state.summary;
  const all = arr(s?.flows).filter(isObj).map(flowRow);
  const tokens = state.filter.toLowerCase().split(/\s+/).filter(Boolean);
  const rows = all.filter((r) => tokens.every((tok) => r.haystack.includes(tok)));
  const { key, dir } = state.sort;
  const sign = dir === "ascending" ? 1 : -1;
  const coll = collator();
  rows.sort((a, b) => {
    let c;
    // Unmeasured values (no kernel signal for this flow) stay at the bottom either way.
    if (NUMERIC.has(key) && (a[key] === null) !== (b[key] === null)) {
      return a[key] === null ? 1 : -1;
    }
    if (NUMERIC.has(key)) c = (a[key] ?? 0) - (b[key] ?? 0);
    else if (key === "dir") c = coll.compare(t(`dir_${a.dir}`), t(`dir_${b.dir}`));
    else c = coll.compare(a[key], b[key]);
    return c * sign || (b.bytes ?? 0) - (a.bytes ?? 0);
  });

  for (const th of document.querySelectorAll("#flows thead th")) {
    th.setAttribute("aria-sort", th.dataset.col === key ? dir : "none");
  }

  const body = $("flows-body");
  const out = rows.map((r) =>
    h(
      "tr",
      { "data-flow": r.key, "data-direction": r.dir, "data-proto": r.proto },
      h("td", { text: r.iface }),
      h("td", { text: r.dir === "rx" || r.dir === "tx" ? t(`dir_${r.dir}`) : r.dir }),
      h("td", { text: r.proto }),
      h("td", { class: "addr", text: r.src }),
      h("td", { class: "addr", text: r.dst }),
      h("td", { class: "num", text: fmtBits(r.rate) }),
      h("td", { class: "num", text: fmtInt(r.packets) }),
      h("td", { class: "num", text: fmtBytes(r.bytes) }),
      h("td", { class: "num", "data-col": "drops", text: fmtCount(r.drops) }),
      h("td", { class: "num", "data-col": "retransmits", text: fmtCount(r.retransmits) }),
      h("td", { class: "num", "data-col": "rtt", text: fmtRttUs(r.rtt) }),
    )
  );
  if (out.length === 0) {
    const msg = all.length === 0 ? t("noFlows") : t("noMatch");
    const cols = document.querySelectorAll("#flows thead th").length || 11;
    out.push(h("tr", { class: "empty-row" }, h("td", { colspan: cols, text: msg })));
  }
  body.replaceChildren(...out);
  $("flow-count").textContent = all.length
    ? t("flowCount", { shown: rows.length, total: all.length })
    : "";
}

function onSortClick(ev) {
  const btn = ev.target instanceof Element ? ev.target.closest("button[data-sort]") : null;
  if (!btn) return;
  const key = btn.dataset.sort;
  if (state.sort.key === key) {
    state.sort.dir = state.sort.dir === "ascending" ? "descending" : "ascending";
  } else {
    state.sort = { key, dir: NUMERIC.has(key) ? "descending" : "ascending" };
  }
  guard("flows-section", renderFlows);
}

// ---------------------------------------------------------------------------------------------
// 3b. Kernel drops by reason (null when kernel signals are off: the section is hidden).

function renderDrops() {
  const drops = state.summary?.drops;
  const section = $("drops");
  if (!Array.isArray(drops)) {
    section.hidden = true;
    return;
  }
  section.hidden = false;
  const list = drops.filter(isObj).map((d) => ({
    iface: str(d.interface, "?"),
    reason: str(d.reason, "?"),
    count: num(d.count),
  }));
  list.sort((a, b) => (b.count ?? -1) - (a.count ?? -1));
  const rows = list.map((d) =>
    h(
      "tr",
      { "data-drop": `${d.iface}|${d.reason}`, "data-interface": d.iface, "data-reason": d.reason },
      h("td", { text: d.iface }),
      h("td", { class: "kreason", text: d.reason }),
      h("td", { class: "num", text: fmtInt(d.count) }),
    )
  );
  $("drops-body").replaceChildren(...rows);
  $("drops-wrap").hidden = rows.length === 0;
  $("drops-empty").hidden = rows.length > 0;
}

// ---------------------------------------------------------------------------------------------
// 4. Mesh peers.

function renderMesh() {
  const mesh = state.summary?.mesh;
  const section = $("mesh");
  if (!isObj(mesh)) {
    section.hidden = true;
    return;
  }
  section.hidden = false;
  const peers = arr(mesh.peers).filter(isObj);
  const rows = peers.map((p) => {
    const st = str(p.state, "?");
    const known = ["alive", "suspect", "dead", "left"].includes(st);
    const rtt = num(obj(p.rtt).ewmaSeconds);
    const loss = num(obj(p.loss).ratio);
    const bytes = obj(p.bytes);
    return h(
      "tr",
      { "data-peer": str(p.name), "data-state": st },
      h("td", { text: str(p.name, "?") }),
      h(
        "td",
        null,
        h("span", { class: "pill", "data-state": st, text: known ? t(`peer_${st}`) : st }),
        " ",
        toDate(p.since) ? timeEl(p.since, "since") : "",
      ),
      h("td", {
        class: "num",
        text: rtt === null ? "—" : nf(rtt < 0.01 ? 2 : 1).format(rtt * 1e3),
      }),
      h("td", { class: "num", text: loss === null ? "—" : nf(1).format(loss * 100) }),
      h("td", { class: "num", text: fmtBytes(bytes.received) }),
      h("td", { class: "num", text: fmtBytes(bytes.sent) }),
    );
  });
  if (rows.length === 0) {
    rows.push(h("tr", { class: "empty-row" }, h("td", { colspan: 6, text: t("noPeers") })));
  }
  $("peers-body").replaceChildren(...rows);
}

// ---------------------------------------------------------------------------------------------
// 5. Recent events.

function describe(e) {
  const d = obj(e.data);
  const st = (v) => t(`state_${stateKey(v)}`);
  const peerState = (v) =>
    ["alive", "suspect", "dead", "left"].includes(v) ? t(`peer_${v}`) : str(v, "?");
  const withReason = (text, reason) => (reason ? `${text}: ${reason}` : text);
  switch (e.type) {
    case "flow":
      return t("evFlow", {
        proto: protoName(d.proto),
        src: endpoint(d.saddr, d.sport, d.proto, d.family),
        dst: endpoint(d.daddr, d.dport, d.proto, d.family),
        iface: str(d.interface, "?"),
      });
    case "health": {
      const vars = { component: str(d.component, "?"), from: st(d.previous), to: st(d.state) };
      return withReason(t(d.previous ? "evHealth" : "evHealthNew", vars), str(d.reason));
    }
    case "attach": {
      const hooks = arr(d.hooks).map((x) => str(x)).filter(Boolean);
      if (d.xdpMode) hooks.push(`XDP ${str(d.xdpMode)}`);
      const text = t("evAttach", { iface: str(d.interface, "?") });
      return hooks.length ? `${text} (${hooks.join(", ")})` : text;
    }
    case "detach":
      return withReason(t("evDetach", { iface: str(d.interface, "?") }), str(d.reason));
    case "peer": {
      const name = str(d.name || d.id, "?");
      const vars = { name, from: peerState(d.previous), to: peerState(d.state) };
      return t(d.previous ? "evPeer" : "evPeerNew", vars);
    }
    case "mode":
      return d.mode === "fallback"
        ? withReason(t("evModeFallback"), str(d.reason))
        : t("evModeEbpf");
    case "reload":
      return d.ok === false ? withReason(t("evReloadFail"), str(d.error)) : t("evReloadOk");
    case "gap":
      return num(d.lost) ? t("evGapLost", { n: nf(0).format(d.lost) }) : t("evGap");
    case "reset":
      return t("evReset");
    case "mapek":
      if (d.decision) return decisionLine(d.symptom, d.subject, d.outcome);
      return withReason(
        `${str(d.kind, "MAPE-K")} ${str(d.target)}: ${label("st_", str(d.state))}`,
        str(d.reason),
      );
    default:
      return t("evOther");
  }
}

function renderEvents() {
  const items = state.events.map((e) =>
    h(
      "li",
      {
        "data-event-type": e.type,
        "data-event-id": e.id === null ? undefined : e.id,
      },
      timeEl(e.time),
      h("span", { class: "ev-type", "data-type": e.type, text: eventTypeLabel(e.type) }),
      h("span", { class: "ev-desc", text: describe(e) }),
    )
  );
  $("events-list").replaceChildren(...items);
  $("events-empty").hidden = items.length > 0;
}

function eventTypeLabel(type) {
  const key = `ev_${type}`;
  return key in STRINGS.en ? t(key) : type;
}

function addEvent(type, raw) {
  // Numbered events carry {id, type, time, data}; anything else (a gap) is the data itself.
  // (EventSource's lastEventId is not used: it keeps the previous id for events without one.)
  const wrapped = isObj(raw) && "data" in raw && ("time" in raw || "id" in raw);
  const id = wrapped ? num(raw.id) : null;
  if (id !== null) {
    if (state.lastId !== null && id <= state.lastId) return; // a replay we already have
    state.lastId = id;
  }
  const time = num(wrapped ? raw.time : null) ?? Date.now();
  state.events.unshift({ id, type, time, data: wrapped ? raw.data : raw });
  if (state.events.length > MAX_EVENTS) state.events.length = MAX_EVENTS;
  guard("events", renderEvents);
}

// ---------------------------------------------------------------------------------------------
// 6. MAPE-K, from its API: polled, and re-read soon after a "mapek" event. Read-only (revoking
// needs the API token). Action kinds are shown as the policy names of the configuration.

const mapek = {
  phase: "loading", // "on", or "off" when the API answers 404
  error: "",
  status: null,
  actions: [],
  decisions: [],
  shown: "", // lang and ids of the decisions on screen
  seen: null, // decision ids seen; null until the first answer (nothing announced then)
  busy: false,
  timer: 0,
  due: Infinity,
};
/** The appliance's clock minus this browser's (from the summaries): expiries count on its clock. */
let skew = 0;

const label = (prefix, v) => (`${prefix}${v}` in STRINGS.en ? t(`${prefix}${v}`) : v || "?");
const fmtNum = (v) => (num(v) === null ? "—" : nf(2).format(v));
const pad2 = (n) => String(n).padStart(2, "0");

/** Time left as m:ss (h:mm:ss past an hour). */
function fmtLeft(ms) {
  if (!(ms > 0)) return "0:00";
  const s = Math.ceil(ms / 1000);
  const m = Math.floor(s / 60) % 60;
  const hh = Math.floor(s / 3600);
  return `${hh ? `${hh}:${pad2(m)}` : m}:${pad2(s % 60)}`;
}

// The API token, when the appliance puts reads behind it (api.auth: all): asked for once and
// kept in this tab's session storage, never in the page's address.
const TOKEN_KEY = "x0tta6bl4.token";

function apiToken() {
  try {
    return sessionStorage.getItem(TOKEN_KEY) ?? "";
  } catch {
    return "";
  }
}

function authHeaders() {
  const token = apiToken();
  return token ? { authorization: `Bearer ${token}` } : {};
}

/** Shows the token form (the API answered 401) and stops live updates until one is given. */
function askToken() {
  $("token-form").hidden = false;
  source?.close();
  source = null;
  state.conn = "token";
  renderConn();
}

async function getJson(path) {
  const r = await fetch(path, {
    cache: "no-store",
    headers: { accept: "application/json", ...authHeaders() },
  });
  if (r.status === 401) {
    askToken();
    throw new Error("the API token is needed");
  }
  if (r.status === 404) return null;
  if (!r.ok) throw new Error(`HTTP ${r.status} ${path}`);
  return r.json();
}

function mapekSchedule(ms) {
  if (Date.now() + ms >= mapek.due) return;
  clearTimeout(mapek.timer);
  mapek.due = Date.now() + ms;
  mapek.timer = setTimeout(loadMapek, ms);
}

const mapekSoon = () => mapekSchedule(300);

async function loadMapek() {
  mapek.due = Infinity;
  if (mapek.busy) return mapekSoon();
  mapek.busy = true;
  try {
    const status = await getJson("/api/v1/mapek");
    const [d, a] = status === null ? [] : await Promise.all([
      getJson("/api/v1/mapek/decisions?limit=20"),
      getJson("/api/v1/mapek/actions"),
    ]);
    Object.assign(mapek, {
      phase: status === null ? "off" : "on",
      error: "",
      status: isObj(status) ? status : null,
      decisions: arr(obj(d).decisions).filter(isObj),
      actions: arr(obj(a).actions).filter(isObj),
    });
  } catch (e) {
    mapek.error = str(e?.message ?? e, "?");
  }
  mapek.busy = false;
  guard("mapek", renderMapek);
  mapekSchedule(mapek.phase === "off" ? 30_000 : 3000);
}

function renderMapek() {
  const { phase, status, error } = mapek;
  $("mapek").dataset.mapek = phase;
  const note = $("mapek-note");
  note.removeAttribute("data-i18n");
  note.hidden = !!status && !error;
  note.textContent = phase === "off" ? t("mapekOff") : error ? `MAPE-K: ${error}` : t("waiting");
  $("mapek-body").hidden = !status;
  if (!status) return;

  const mode = str(status.mode, "?");
  const known = mode === "observe" || mode === "enforce";
  $("mapek-mode").dataset.mode = mode;
  $("mapek-mode-name").textContent = known ? t(`mode_${mode}`) : mode;
  $("mapek-mode-hint").textContent = known ? `— ${t(`modeHint_${mode}`)}` : "";

  const now = Date.now() + skew;
  const rows = mapek.actions.map((a) => {
    const kind = str(a.kind);
    const st = str(a.state);
    const v = num(a.value);
    const detail = v === null
      ? ""
      : kind === "rate_limit"
      ? ` (${fmtInt(v)} ${t("pps")})`
      : kind === "sample_events"
      ? ` (1/${fmtInt(2 ** v)})`
      : ` (${fmtInt(v)})`;
    const exp = num(a.expiresAt);
    return h(
      "tr",
      { "data-action": str(a.id), "data-kind": kind, "data-state": st },
      h("td", { class: "addr", text: kind + detail }),
      h("td", { class: "addr", text: str(a.target, "?") }),
      h("td", null, h("span", { class: "pill", "data-state": st, text: label("st_", st) })),
      h("td", { class: "num", "data-expires": exp, text: exp === null ? "—" : fmtLeft(exp - now) }),
      h("td", { class: "num", text: fmtCount(a.droppedPackets) }),
      h("td", { class: "addr", text: str(a.id) }),
    );
  });
  if (rows.length === 0) {
    rows.push(h("tr", { class: "empty-row" }, h("td", { colspan: 6, text: t("noActions") })));
  }
  $("mapek-actions-body").replaceChildren(...rows);
  renderDecisions();
}

function tickMapek() {
  const now = Date.now() + skew;
  for (const el of document.querySelectorAll("#mapek-actions-body [data-expires]")) {
    el.textContent = fmtLeft(Number(el.dataset.expires) - now);
  }
}

function evidenceText(e) {
  const b = obj(e.baseline);
  return t("evidence", {
    metric: str(e.metric, "?"),
    value: fmtNum(e.value),
    unit: str(e.unit),
    threshold: fmtNum(e.threshold),
    baseline: isObj(e.baseline)
      ? t("baseline", { median: fmtNum(b.median), samples: fmtInt(b.samples) })
      : t(e.learning === true ? "learning" : "fixed"),
    window: str(e.window, "?"),
  });
}

/** "source flood 10.0.0.1: observed", for the events list and the announcement. */
const decisionLine = (kind, subject, outcome) =>
  `${label("sym_", str(kind))} ${str(subject)}: ${label("st_", str(outcome))}`;

function decisionItem(d) {
  const s = obj(d.symptom);
  const kind = str(s.kind);
  const outcome = str(d.outcome);
  const evidence = arr(s.evidence).filter(isObj).map((e) => h("li", { text: evidenceText(e) }));
  return h(
    "li",
    { "data-decision": str(d.id), "data-symptom": kind, "data-outcome": outcome },
    h(
      "p",
      null,
      timeEl(d.at),
      " ",
      h("span", { class: "outcome", "data-outcome": outcome, text: label("st_", outcome) }),
      " ",
      h("strong", { text: label("sym_", kind) }),
      " ",
      h("span", { class: "addr", text: str(s.subject) }),
    ),
    h("p", { text: str(d.reason) }),
    evidence.length ? h("ul", { class: "evidence" }, ...evidence) : null,
  );
}

function renderDecisions() {
  const list = mapek.decisions;
  const ids = list.map((d) => str(d.id));
  const shown = [lang, ...ids].join(" ");
  if (shown !== mapek.shown) {
    mapek.shown = shown;
    $("mapek-decisions").replaceChildren(...list.map(decisionItem));
  }
  $("mapek-decisions-empty").hidden = list.length > 0;
  // Announce the decisions that are new since the last answer.
  const fresh = list.filter((_, i) => mapek.seen && !mapek.seen.has(ids[i]));
  mapek.seen = new Set(ids);
  if (fresh.length) {
    $("mapek-live").textContent = `${t("mapekDecisions")}: ` +
      fresh.slice(0, 3).map((d) => decisionLine(d.symptom?.kind, d.symptom?.subject, d.outcome))
        .join("; ");
  }
}

// ---------------------------------------------------------------------------------------------
// 7. Health components.

function renderComponents() {
  const comps = arr(obj(state.summary?.health).components).filter(isObj);
  const rows = comps.map((c) => {
    const st = stateKey(c.state);
    return h(
      "tr",
      { "data-component": str(c.component), "data-state": str(c.state) },
      h("th", { scope: "row", text: str(c.component, "?") }),
      h("td", null, h("span", { class: "pill", "data-state": st, text: t(`state_${st}`) })),
      h("td", { class: "reason", text: str(c.reason, "—") }),
      h("td", null, timeEl(c.since)),
    );
  });
  if (rows.length === 0) {
    const msg = state.summary ? t("noComponents") : t("waiting");
    rows.push(h("tr", { class: "empty-row" }, h("td", { colspan: 4, text: msg })));
  }
  $("components-body").replaceChildren(...rows);
}

// ---------------------------------------------------------------------------------------------
// Rendering everything, language, connection.

function renderAll() {
  guard("status", renderStatus);
  guard("interfaces", renderInterfaces);
  guard("flows-section", renderFlows);
  guard("drops", renderDrops);
  guard("mesh", renderMesh);
  guard("events", renderEvents);
  guard("health", renderComponents);
  renderUpdated();
}

function renderUpdated() {
  const el = $("updated");
  const at = state.summary ? num(state.summary.takenAt) : null;
  const d = at === null ? null : toDate(at);
  el.textContent = d ? fmtTime(at) : "—";
  if (d) el.dateTime = d.toISOString();
}

function renderConn() {
  const el = $("conn");
  el.dataset.state = state.conn;
  document.body.dataset.conn = state.conn;
  const key = {
    open: "connLive",
    reconnecting: "connReconnecting",
    unsupported: "connUnsupported",
    token: "connToken",
  }[state.conn] ?? "connConnecting";
  const text = $("conn-text");
  text.dataset.i18n = key;
  text.textContent = t(key);
}

function applyLanguage(next) {
  lang = LANGS.includes(next) ? next : "en";
  document.documentElement.lang = lang;
  document.title = t("title");
  for (const el of document.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
  for (const el of document.querySelectorAll("[data-i18n-placeholder]")) {
    el.setAttribute("placeholder", t(el.dataset.i18nPlaceholder));
  }
  const sel = $("lang");
  if (sel.value !== lang) sel.value = lang;
  renderConn();
  renderAll();
  guard("mapek", renderMapek);
}

function initialLanguage() {
  try {
    const saved = localStorage.getItem(LANG_KEY);
    if (saved && LANGS.includes(saved)) return saved;
  } catch {
    // storage may be disabled; fall through to the browser's languages
  }
  const prefs = Array.isArray(navigator.languages) && navigator.languages.length
    ? navigator.languages
    : [navigator.language];
  for (const p of prefs) {
    const base = str(p).toLowerCase().split("-")[0];
    if (LANGS.includes(base)) return base;
  }
  return "en";
}

function parse(data) {
  try {
    return JSON.parse(data);
  } catch {
    return null;
  }
}

let source = null;
let retryTimer = null;
let retryDelay = 1000;

async function connect() {
  if (typeof EventSource === "undefined") {
    state.conn = "unsupported";
    renderConn();
    return;
  }
  // EventSource shows no status code: ask first whether a token is needed.
  try {
    await getJson("/api/v1/health");
  } catch {
    if (state.conn === "token") return;
  }
  let url = "/api/v1/events?summary=1";
  const token = apiToken();
  if (token) url += `&access_token=${encodeURIComponent(token)}`;
  // A fresh EventSource cannot send Last-Event-ID itself; the API also reads it from the query.
  if (state.lastId !== null) url += `&last_event_id=${encodeURIComponent(state.lastId)}`;
  const es = new EventSource(url);
  source = es;

  es.onopen = () => {
    retryDelay = 1000;
    state.conn = "open";
    renderConn();
  };
  es.onerror = () => {
    state.conn = "reconnecting";
    renderConn();
    // The browser retries by itself unless the response was unusable (readyState CLOSED).
    if (es.readyState === EventSource.CLOSED && source === es && retryTimer === null) {
      retryTimer = setTimeout(() => {
        retryTimer = null;
        if (source === es) connect();
      }, retryDelay);
      retryDelay = Math.min(retryDelay * 2, 30_000);
    }
  };

  es.addEventListener("hello", (ev) => {
    const last = num(obj(parse(ev.data)).lastId);
    // The appliance restarted: its event ids start again, so forget ours.
    if (last !== null && state.lastId !== null && last < state.lastId) state.lastId = null;
    if (state.conn !== "open") {
      state.conn = "open";
      renderConn();
    }
    mapekSoon();
  });
  // The appliance did not issue the id this page resumed from (it restarted): start afresh.
  es.addEventListener("reset", (ev) => {
    state.lastId = null;
    addEvent("reset", parse(ev.data));
  });
  es.addEventListener("summary", (ev) => {
    const s = parse(ev.data);
    if (!isObj(s)) return;
    state.summary = s;
    const at = num(s.takenAt);
    if (at !== null) skew = at - Date.now();
    guard("interfaces", () => recordSamples(s));
    renderAll();
  });
  const types = ["flow", "health", "attach", "detach", "peer", "mode", "reload", "gap", "mapek"];
  for (const type of types) {
    es.addEventListener(type, (ev) => {
      addEvent(type, parse(ev.data));
      if (type === "mapek") mapekSoon();
    });
  }
  // Events of types this page does not know yet arrive as "message".
  es.onmessage = (ev) => {
    const raw = parse(ev.data);
    const type = isObj(raw) && typeof raw.type === "string" ? raw.type : "message";
    addEvent(type, raw);
  };
}

function start() {
  $("lang").addEventListener("change", (ev) => {
    const v = ev.target.value;
    try {
      localStorage.setItem(LANG_KEY, v);
    } catch {
      // not persisted; the choice still applies to this page
    }
    applyLanguage(v);
  });
  $("flow-filter").addEventListener("input", (ev) => {
    state.filter = str(ev.target.value);
    guard("flows-section", renderFlows);
  });
  document.querySelector("#flows thead").addEventListener("click", onSortClick);
  $("token-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    try {
      sessionStorage.setItem(TOKEN_KEY, $("token").value.trim());
    } catch {
      // this tab cannot keep it; nothing will be shown
    }
    $("token").value = "";
    $("token-form").hidden = true;
    state.conn = "connecting";
    renderConn();
    connect();
    loadMapek();
  });
  applyLanguage(initialLanguage());
  connect();
  loadMapek();
  setInterval(tickMapek, 1000);
}

if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
else start();
