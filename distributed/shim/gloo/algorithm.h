// Stand-in for gloo/algorithm.h: see gloo/forward.h for why.
#pragma once
#include <gloo/forward.h>
