//===- TemplateParser.h - tokens to the template's statements ---*- C++ -*-===//

#ifndef XFMR_RUNTIME_TEMPLATE_TEMPLATEPARSER_H
#define XFMR_RUNTIME_TEMPLATE_TEMPLATEPARSER_H

#include "template/TemplateAst.h"
#include "template/TemplateLexer.h"

namespace xfmr::runtime::jinja {

/// Parses a whole template with Jinja's grammar and operator precedence.
/// Throws `Error` with the line of a syntax error or of a tag outside the
/// supported subset (macro, call, include, extends, ...), naming the tag.
std::vector<Node> parseTemplate(const std::vector<Token> &tokens);

} // namespace xfmr::runtime::jinja

#endif // XFMR_RUNTIME_TEMPLATE_TEMPLATEPARSER_H
