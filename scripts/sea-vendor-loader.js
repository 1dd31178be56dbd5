// Not linted (biome.json): it is raw script text that shadows the wrapper's `require` on purpose.
// Prepended to the single executable's main script (see scripts/build.ts), after a line that
// defines __sfVendorGroups ({ package or module id: group name }). Third-party libraries that most runs
// never need (the Google clients, the YAML and TOML parsers) are not in the main script: each group is a
// second script stored as a SEA asset with its own V8 code cache, compiled and run only when
// first required, so a run that reads a local dotenv file never pays to load them.
var require = ((nodeRequire) => {
  var loaded = {};
  function loadGroup(group) {
    var sea = nodeRequire('node:sea');
    var vm = nodeRequire('node:vm');
    var script = new vm.Script(sea.getAsset(group + '.js', 'utf8'), {
      filename: 'secret-fetch-' + group + '.js',
      cachedData: Buffer.from(sea.getAsset(group + '.cache')),
    });
    if (script.cachedDataRejected) process.emitWarning('secret-fetch: the code cache of ' + group + ' was rejected');
    var module = { exports: {} };
    var dir = nodeRequire('node:path').dirname(process.execPath);
    script.runInThisContext()(require, module, module.exports, process.execPath, dir);
    return module.exports;
  }
  function require(id) {
    // Our own modules that the groups share with this script (see INTERNAL_GROUPS in build.ts).
    if (id.startsWith('@secret-fetch/core/')) {
      var shared = globalThis.__sfCore && globalThis.__sfCore[id.slice(19)];
      if (shared === undefined) throw new Error('secret-fetch: ' + id + ' is not exported by the main script');
      return shared;
    }
    var group = __sfVendorGroups[id];
    if (group === undefined) return nodeRequire(id);
    loaded[group] = loaded[group] || loadGroup(group);
    return loaded[group](id);
  }
  return require;
})(require);
