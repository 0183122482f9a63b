"""Every user-visible text (Simplified Chinese): the intake side's and the follow-up engine's."""

from .duplicates import *
from .errors import *
from .followup import *
from .grids import *
from .gridwork import *
from .hard import *
from .intake import *
from .learning import *
