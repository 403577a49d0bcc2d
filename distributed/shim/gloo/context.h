// Stand-in for gloo/context.h: see gloo/forward.h for why.
#pragma once
#include <gloo/forward.h>
