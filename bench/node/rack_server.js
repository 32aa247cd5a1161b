// Formation racks served by node-opcua: an OPC UA server on another stack, cheap enough per notification to load
// the gateway with tens of thousands of data changes a second on the same two cores (the simulators' asyncua servers
// saturate near 6,000). The address space comes from bench/opcua_peer.py (the vendor dialect's nodes, their types
// and first values, as the simulator serves them); this file adds nothing of the dialect's own.
// Once every `update_ms` each changing node takes a new value (a small walk, rounded as the machine rounds) with that
// moment as its source timestamp; the counters count.
// Usage: node rack_server.js <description.json>. Prints "ready <port> ..." once every rack listens.
"use strict";
const fs = require("fs");
const { OPCUAServer, MonitoredItem } = require("node-opcua-server");
const { AttributeIds, NodeClass } = require("node-opcua-data-model");
const { Variant, DataType } = require("node-opcua-variant");
const { StatusCodes } = require("node-opcua-status-code");

// The racks report by exception, as a controller that pushes its values does: each change is queued when it is
// made (node-opcua's exception-based model, with no coalescing window: the racks change a value at most once an
// update, and the updates come at the sampling interval the gateway asks), instead of node-opcua sampling every
// monitored item on a timer. Sampling 6,000 items a second per rack cost the server ~30 us each (0.6 of a core for
// four racks); the gateway's side is the same either way: one notification per change at the publishing interval.
const startSampling = MonitoredItem.prototype.__start_sampling;
MonitoredItem.prototype.__start_sampling = function (recordInitialValue) {
  const node = this.node;
  if (this.itemToMonitor.attributeId === AttributeIds.Value && node && node.nodeClass === NodeClass.Variable &&
      !node.minimumSamplingInterval) {
    this._exceptionBased = true;
    this.samplingInterval = 0; // the revised interval was answered at creation; this is the coalescing window
  }
  return startSampling.call(this, recordInitialValue);
};

const INT_MAX = { Int16: 2 ** 15 - 1, UInt16: 2 ** 16 - 1, Int32: 2 ** 31 - 1, UInt32: 2 ** 32 - 1 };

async function serve(rack) {
  const server = new OPCUAServer({
    port: rack.port,
    resourcePath: rack.path,
    maxConnectionsPerEndpoint: 20,
    serverCapabilities: { maxMonitoredItemsPerCall: 100000, operationLimits: { maxNodesPerTranslateBrowsePathsToNodeIds: 100000, maxNodesPerRead: 100000 } },
  });
  await server.initialize();
  const space = server.engine.addressSpace;
  const ns = space.registerNamespace(rack.namespace);
  const objects = new Map();
  const parentOf = (parts) => {
    let parent = null;
    for (let depth = 1; depth <= parts.length; depth++) {
      const key = parts.slice(0, depth).join("/");
      let obj = objects.get(key);
      if (!obj) {
        const where = parent ? { componentOf: parent } : { organizedBy: space.rootFolder.objects };
        obj = ns.addObject({ ...where, browseName: parts[depth - 1], nodeId: `s=${key}` });
        objects.set(key, obj);
      }
      parent = obj;
    }
    return parent;
  };
  const changing = [];
  for (const v of rack.variables) {
    const parts = rack.root.concat(v.node.split("/"));
    const parent = parentOf(parts.slice(0, -1));
    const node = ns.addVariable({
      componentOf: parent,
      browseName: parts[parts.length - 1],
      nodeId: `s=${parts.join("/")}`,
      dataType: v.type,
      minimumSamplingInterval: 0,
      accessLevel: v.writable ? "CurrentRead | CurrentWrite" : "CurrentRead",
      userAccessLevel: v.writable ? "CurrentRead | CurrentWrite" : "CurrentRead",
      value: { dataType: DataType[v.type], value: v.value },
    });
    if (v.change) changing.push({ node, type: DataType[v.type], typeName: v.type, value: v.value, ...v.change });
  }
  for (const m of rack.methods) {
    const parts = rack.root.concat(m.split("/"));
    const method = ns.addMethod(parentOf(parts.slice(0, -1)), {
      browseName: parts[parts.length - 1], nodeId: `s=${parts.join("/")}`, inputArguments: [], outputArguments: [],
    });
    method.bindMethod((inputArguments, context, callback) => callback(null, { statusCode: StatusCodes.Good, outputArguments: [] }));
  }
  await server.start();
  return changing;
}

function step(c, k, i) {
  if (c.count) {  // a counter: wraps to 0 past its type's largest value
    c.value = c.value >= (INT_MAX[c.typeName] ?? INT_MAX.Int32) ? 0 : c.value + 1;
    return c.value;
  }
  // Up or down by one step, the direction from the update and the node: every update changes every node.
  const up = ((k * 7 + i * 13) % 10) < 5;
  const next = c.value + (up ? c.step : -c.step);
  c.value = c.digits === undefined ? Math.round(next) : Number(next.toFixed(c.digits));
  return c.value;
}

async function main() {
  for (const signal of ["SIGTERM", "SIGINT"]) process.on(signal, () => process.exit(0));
  const description = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
  const all = [];
  for (const rack of description.racks) all.push(await serve(rack));
  console.log("ready " + description.racks.map((r) => r.port).join(" "));
  // A tenth of each rack's changing nodes every tenth of the update: values change at every moment, as a hall's
  // channels do, not all in the same millisecond (which would make every latency the same phase of the publishing).
  const slices = 10;
  let tick = 0;
  setInterval(() => {
    const slice = tick % slices;
    const k = Math.floor(tick / slices);
    tick++;
    const ts = new Date();
    for (const changing of all) {
      for (let i = slice; i < changing.length; i += slices) {
        const c = changing[i];
        c.node.setValueFromSource(new Variant({ dataType: c.type, value: step(c, k, i) }), StatusCodes.Good, ts);
      }
    }
  }, description.update_ms / slices);
}

main().catch((err) => {
  console.error(err && err.stack ? err.stack : String(err));
  process.exit(1);
});
