// Stand-in for gloo/common/error.h: see gloo/forward.h for why.
#pragma once
#include <gloo/forward.h>
