//===- Xfmr.td - umbrella for the xfmr dialect ------------*- tablegen -*-===//
//
// Includes the dialect, its enums, attributes, types and ops, so one
// mlir-tblgen invocation per generator sees everything.
//
//===----------------------------------------------------------------------===//

#ifndef XFMR_TD
#define XFMR_TD

include "dialects/Xfmr/XfmrDialect.td"
include "dialects/Xfmr/XfmrEnums.td"
include "dialects/Xfmr/XfmrAttrs.td"
include "dialects/Xfmr/XfmrTypes.td"
include "dialects/Xfmr/XfmrOps.td"

#endif // XFMR_TD
