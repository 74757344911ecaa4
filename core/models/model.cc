// The family-neutral parts of core::Model. Loading by family lives in core/app/family_registry.h.
#include "core/models/model.h"
