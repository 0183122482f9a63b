"""Every user-visible text (Simplified Chinese): the intake side's and the follow-up engine's."""

from .errors import *
from .followup import *
from .grids import *
from .gridwork import *
from .intake import *
