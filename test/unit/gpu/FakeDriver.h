//===- FakeDriver.h - what the fake CUDA and HIP drivers share --*- C++ -*-===//
//
// The tests' fake GPU drivers (FakeCuda.cpp, FakeHip.cpp) keep a log of what
// they were asked to do, for the device tests to compare: each kernel
// launch, direct or a node of a launched graph, as
// "name(v0,v1,...) GXxGYxGZ" with its i32 parameters (the tests' kernels
// take scalars only: a kernel's count is the number after "_s" in its
// name), and the graph calls ("node +", "node =", "instantiate", "graph
// launch", "graph -"). Kernels do not run; memory is host memory.
//
//===----------------------------------------------------------------------===//

#ifndef XFMR_TEST_UNIT_GPU_FAKEDRIVER_H
#define XFMR_TEST_UNIT_GPU_FAKEDRIVER_H

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace fake {

/// A kernel of the loaded module.
struct Function {
  std::string name;
  int scalars = 0;
};

/// A launch as the log shows it.
inline std::string describe(const Function &function, const unsigned grid[3],
                            void **params) {
  std::string text = function.name + "(";
  for (int i = 0; i < function.scalars; ++i) {
    int32_t value;
    std::memcpy(&value, params[i], sizeof(value));
    text += (i ? "," : "") + std::to_string(value);
  }
  return text + ") " + std::to_string(grid[0]) + "x" + std::to_string(grid[1]) +
         "x" + std::to_string(grid[2]);
}

struct Node {
  std::string launch;
};
struct Graph {
  std::vector<std::unique_ptr<Node>> nodes;
};
/// An instantiated graph: its own copy of each node, by the graph's node.
struct Exec {
  std::vector<Node *> order;
  std::map<Node *, std::string> launches;
};

inline std::string &log() {
  static std::string text;
  return text;
}
inline void note(const std::string &line) { log() += line + "\n"; }

/// The kernel `name` of the module (owned here for the process's life).
inline Function *function(const char *name) {
  static std::vector<std::unique_ptr<Function>> all;
  auto made = std::make_unique<Function>();
  made->name = name;
  if (const char *count = std::strstr(name, "_s"))
    made->scalars = std::atoi(count + 2);
  all.push_back(std::move(made));
  return all.back().get();
}

/// Appends a kernel node to `graph`: the devices build chains, each node
/// after the one before (false for anything else).
inline bool addNode(Node **node, Graph *graph, Node *const *after, size_t count,
                    std::string launch) {
  bool chained = graph->nodes.empty()
                     ? count == 0
                     : count == 1 && after[0] == graph->nodes.back().get();
  if (!chained)
    return false;
  auto made = std::make_unique<Node>();
  made->launch = std::move(launch);
  note("node + " + made->launch);
  *node = made.get();
  graph->nodes.push_back(std::move(made));
  return true;
}

inline Exec *instantiate(Graph *graph) {
  auto *made = new Exec;
  for (auto &node : graph->nodes) {
    made->order.push_back(node.get());
    made->launches[node.get()] = node->launch;
  }
  note("instantiate " + std::to_string(graph->nodes.size()));
  return made;
}

/// Replaces a node's launch in an instantiated graph (false: not its node).
inline bool setNode(Exec *exec, Node *node, std::string launch) {
  auto found = exec->launches.find(node);
  if (found == exec->launches.end())
    return false;
  found->second = std::move(launch);
  note("node = " + found->second);
  return true;
}

inline void launchGraph(Exec *exec) {
  note("graph launch");
  for (Node *node : exec->order)
    note("launch " + exec->launches[node]);
}

} // namespace fake

#endif // XFMR_TEST_UNIT_GPU_FAKEDRIVER_H
