//===- TemplateRenderer.h - runs a parsed template --------------*- C++ -*-===//

#ifndef XFMR_RUNTIME_TEMPLATE_TEMPLATERENDERER_H
#define XFMR_RUNTIME_TEMPLATE_TEMPLATERENDERER_H

#include "template/TemplateAst.h"

#include <string>
#include <vector>

namespace xfmr::runtime::jinja {

/// Renders `nodes` with `variables` as the template's context, with Jinja's
/// scoping (a loop body's assignments stay in the loop; `namespace` objects
/// carry values out). Throws `Error` "line N: ..." for whatever Jinja would
/// raise, and when the template runs away (more than 2 million steps or
/// 64 MiB of output).
std::string renderTemplate(const std::vector<Node> &nodes,
                           const Dict &variables);

} // namespace xfmr::runtime::jinja

#endif // XFMR_RUNTIME_TEMPLATE_TEMPLATERENDERER_H
