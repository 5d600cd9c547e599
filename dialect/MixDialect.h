// The mix dialect class. Owns IR only: no scheduling, no emission.
#ifndef MIXTILE_DIALECT_MIXDIALECT_H
#define MIXTILE_DIALECT_MIXDIALECT_H

#include "mlir/IR/Dialect.h"

#include "dialect/MixDialect.h.inc"

#endif // MIXTILE_DIALECT_MIXDIALECT_H
